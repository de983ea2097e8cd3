import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { AccessLog, createLogger, type AccessEntry } from '../../src/log';

// The access log writes its own lines: they must read exactly as pino's own would, bindings included.
function capture() {
  const lines: string[] = [];
  return { lines, stream: { write: (line: string) => void lines.push(line) } };
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** The line's fields as pino is given them: these names, in this order (the access log's format). */
const pinoFields = (e: AccessEntry, durationMs: number) => ({
  request_id: e.requestId,
  route: e.route,
  method: e.method,
  status: e.status,
  code: e.code,
  duration_ms: durationMs,
  upstream: e.upstream,
  consumer_id: e.consumerId,
  tier: e.tier,
  client: e.client,
  traceparent: e.traceparent,
  parser_error: e.parserError,
});

/** The same request through AccessLog and through pino, from one logger; the time field set aside. */
async function bothWays(entry: AccessEntry, bindings?: Record<string, unknown>, durationMs = 1.234) {
  const { lines, stream } = capture();
  const root = createLogger('info', stream);
  const log = bindings ? root.child(bindings) : root;
  log.info(pinoFields(entry, durationMs), 'request');
  new AccessLog(log).request(entry, durationMs);
  await nextTurn();
  expect(lines).toHaveLength(2);
  const withoutTime = (line: string) => line.replace(/,"time":"[^"]+"/, '');
  return { ours: withoutTime(lines[1]), pinos: withoutTime(lines[0]), raw: lines[1] };
}

const TYPICAL: AccessEntry = {
  requestId: 'req-1',
  route: 'users',
  method: 'GET',
  status: 200,
  upstream: 'http://127.0.0.1:4000',
  consumerId: 'key_0123',
  tier: 'free',
  client: '10.0.0.1',
};

describe('AccessLog', () => {
  it('writes the line pino writes: level, time, service, fields in order, msg last, one line', async () => {
    const { ours, pinos, raw } = await bothWays(TYPICAL);
    expect(ours).toBe(pinos);
    expect(raw).toMatch(/^\{"level":30,"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","service":"sluice","request_id":"req-1",/);
    expect(raw.endsWith(',"msg":"request"}\n')).toBe(true);
    expect(raw.indexOf('\n')).toBe(raw.length - 1);
  });

  it("carries a child logger's bindings (a worker's id and pid)", async () => {
    const { ours, pinos } = await bothWays(TYPICAL, { worker: 2, pid: 4242 });
    expect(ours).toBe(pinos);
    expect(ours).toContain('"service":"sluice","worker":2,"pid":4242,"request_id"');
  });

  it.each([
    ['quotes and backslashes', 'a"b\\c'],
    ['control characters', 'line\nbreak\ttab\u0000nul\u001f'],
    ['non-ASCII', 'zoë ☃ 𝄞'],
    ['a JSON injection attempt', '","status":500,"x":"'],
    ['an empty string', ''],
  ])('escapes what a client sent (%s) as valid JSON with the same value', async (_name, value) => {
    const { ours, pinos, raw } = await bothWays({ requestId: value, traceparent: [value, 'second'] });
    expect(JSON.parse(ours)).toEqual(JSON.parse(pinos));
    const parsed = JSON.parse(raw);
    expect(parsed.request_id).toBe(value);
    expect(parsed.traceparent).toEqual([value, 'second']);
    expect(parsed.status).toBeUndefined();
  });

  it('keeps a lone surrogate from breaking the line (escaped, still valid JSON)', async () => {
    const { raw } = await bothWays({ requestId: 'a\ud800b' });
    expect(JSON.parse(raw).request_id).toBe('a\ud800b');
  });

  it('writes numbers as numbers and a number that is not finite as null', async () => {
    const small = await bothWays({ requestId: 'r', status: 504 }, undefined, 0.001);
    expect(small.ours).toBe(small.pinos);
    expect(small.ours).toContain('"status":504,"duration_ms":0.001');
    const broken = await bothWays({ requestId: 'r', status: Number.NaN }, undefined, Infinity);
    expect(broken.ours).toBe(broken.pinos);
    expect(broken.ours).toContain('"status":null,"duration_ms":null');
  });

  it('writes every field when all are set, each once, in the same order as pino', async () => {
    const entry: Required<AccessEntry> = {
      ...TYPICAL,
      requestId: 'req-2',
      code: 'bad_gateway',
      status: 502,
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      parserError: 'HPE_INVALID_METHOD',
    } as Required<AccessEntry>;
    const { ours, pinos, raw } = await bothWays(entry);
    expect(ours).toBe(pinos);
    expect(Object.keys(JSON.parse(raw))).toEqual(['level', 'time', 'service', ...Object.keys(pinoFields(entry, 1)), 'msg']);
  });

  it('follows the level of the logger it writes for, including a change after it was made', () => {
    const { lines, stream } = capture();
    const log = createLogger('warn', stream);
    const access = new AccessLog(log);
    expect(access.enabled).toBe(false);
    log.level = 'info';
    expect(access.enabled).toBe(true);
    log.level = 'silent';
    expect(access.enabled).toBe(false);
    expect(lines).toHaveLength(0);
  });

  it('writes lines still held when the process exits (process.exit in the same turn), before pino\'s own', () => {
    const log = path.resolve(__dirname, '../../../dist/log.js');
    const script = `
      const { AccessLog, createLogger } = require(${JSON.stringify(log)});
      const root = createLogger('info');
      const access = new AccessLog(root);
      access.request({ requestId: 'held-1' }, 1);
      access.request({ requestId: 'held-2' }, 1);
      root.warn('after the access lines');
      process.exit(0);`;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(child.status).toBe(0);
    const lines = child.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    expect(lines.map((line) => line.request_id ?? line.msg).sort()).toEqual(['after the access lines', 'held-1', 'held-2']);
  });
});
