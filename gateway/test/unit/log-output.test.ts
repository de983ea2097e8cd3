import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ATOMIC_PIPE_WRITE, chunkEnd, logLinesDropped, MAX_HELD_BYTES, openLogOutput, type LogOutput } from '../../src/log-output';

// Real pipes (named FIFOs, as Docker and Kubernetes give a container its stdout), files and processes.
const LOG_OUTPUT = path.resolve(__dirname, '../../../dist/log-output.js');
const LOG = path.resolve(__dirname, '../../../dist/log.js');
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let dir: string;
const toClose: number[] = [];
beforeAll(() => (dir = mkdtempSync(path.join(tmpdir(), 'sluice-log-output-'))));
afterEach(() => {
  for (const fd of toClose.splice(0)) {
    try {
      closeSync(fd);
    } catch {
      // closed by the test
    }
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A FIFO with its read end (non-blocking: reading an empty pipe says EAGAIN) and its write end. */
function fifo(): { reader: number; writer: number } {
  const file = path.join(dir, `fifo-${Math.random().toString(36).slice(2)}`);
  expect(spawnSync('mkfifo', [file]).status).toBe(0);
  const reader = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(file, constants.O_WRONLY);
  toClose.push(reader, writer);
  return { reader, writer };
}

/** Whatever the pipe holds now. */
function readNow(reader: number): string {
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(65536);
  for (;;) {
    try {
      const n = readSync(reader, buffer, 0, buffer.length, null);
      if (n === 0) break;
      chunks.push(Buffer.from(buffer.subarray(0, n)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw err;
    }
  }
  return Buffer.concat(chunks).toString();
}

/** Reads until `done(text so far)` or the writers are gone; a little at a time, as a slow reader would. */
async function readUntil(reader: number, done: (text: string) => boolean, timeoutMs = 20_000): Promise<string> {
  let text = '';
  const until = Date.now() + timeoutMs;
  while (!done(text) && Date.now() < until) {
    text += readNow(reader);
    await sleep(5);
  }
  return text;
}

const line = (i: number, size = 200) => `${JSON.stringify({ i, pad: 'x'.repeat(size) })}\n`;

describe('chunkEnd: pipe writes of whole lines, at most PIPE_BUF bytes each', () => {
  it('takes everything that fits, else the whole lines that fit, else one long line alone', () => {
    const short = Buffer.from('a\nbb\n');
    expect(chunkEnd(short, 0)).toBe(short.length);
    const many = Buffer.from(Array.from({ length: 100 }, (_, i) => line(i, 100)).join(''));
    let from = 0;
    while (from < many.length) {
      const end = chunkEnd(many, from);
      expect(end - from).toBeLessThanOrEqual(ATOMIC_PIPE_WRITE);
      expect(many[end - 1]).toBe(0x0a); // ends with a whole line
      from = end;
    }
    const long = Buffer.from(`${'y'.repeat(ATOMIC_PIPE_WRITE * 2)}\nrest\n`);
    expect(chunkEnd(long, 0)).toBe(ATOMIC_PIPE_WRITE * 2 + 1);
  });
});

describe('a pipe', () => {
  it("sends one turn's lines together at the end of the turn, in order", async () => {
    const { reader, writer } = fifo();
    const output = openLogOutput(writer);
    for (let i = 0; i < 5; i++) output.write(line(i));
    expect(readNow(reader)).toBe(''); // nothing before the turn ends
    await nextTurn();
    const lines = readNow(reader).split('\n').filter(Boolean);
    expect(lines.map((l) => JSON.parse(l).i)).toEqual([0, 1, 2, 3, 4]);
  });

  it('never waits while the pipe is full: lines wait in memory, then all arrive whole and in order', async () => {
    const { reader, writer } = fifo();
    const output = openLogOutput(writer);
    const count = 5000; // ~1.1 MB: seventeen times what a pipe holds
    for (let i = 0; i < count; i++) output.write(line(i));
    await nextTurn(); // the pipe fills up here; the rest must wait without holding this thread
    let ticks = 0;
    const ticking = setInterval(() => ticks++, 1);
    await sleep(100);
    clearInterval(ticking);
    expect(ticks).toBeGreaterThan(5); // the loop ran on: a blocking write would have stopped it here
    for (let i = count; i < count + 10; i++) output.write(line(i)); // written while the others wait
    const text = await readUntil(reader, (t) => t.split('\n').length > count + 10);
    const lines = text.split('\n').filter(Boolean);
    expect(lines.map((l) => JSON.parse(l).i)).toEqual(Array.from({ length: count + 10 }, (_, i) => i));
  });

  it('holds at most MAX_HELD_BYTES for a reader that does not keep up: the rest is dropped, counted and said once lines flow again', async () => {
    const { reader, writer } = fifo();
    const output = openLogOutput(writer);
    const droppedBefore = logLinesDropped();
    const count = Math.ceil((MAX_HELD_BYTES * 1.5) / line(0).length); // half again what may wait
    for (let i = 0; i < count; i++) output.write(line(i));
    await nextTurn();
    const dropped = logLinesDropped() - droppedBefore;
    expect(dropped).toBeGreaterThan(count / 4);
    expect(dropped).toBeLessThan(count / 2);
    const text = await readUntil(reader, (t) => t.split('\n').length > count - dropped, 60_000);
    output.write(line(-1)); // lines flow again: the note comes first
    const rest = await readUntil(reader, (t) => t.includes('"i":-1'));
    const lines = (text + rest).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(lines.slice(0, count - dropped).map((l) => l.i)).toEqual(Array.from({ length: count - dropped }, (_, i) => i)); // the first ones, whole, in order
    expect(lines[count - dropped]).toMatchObject({ level: 40, dropped_lines: dropped, msg: 'log lines dropped: the log reader did not keep up' });
    expect(lines[count - dropped + 1].i).toBe(-1);
  }, 90_000);

  it('drops lines without throwing once nobody reads (EPIPE), and goes on', async () => {
    const { reader, writer } = fifo();
    const output = openLogOutput(writer);
    closeSync(reader);
    output.write(line(1));
    await nextTurn();
    expect(() => output.write(line(2))).not.toThrow();
    await nextTurn();
    expect(() => output.flushSync()).not.toThrow();
  });
});

describe('a file', () => {
  it('appends the lines at the end of the turn, or at once on flushSync', async () => {
    const file = path.join(dir, 'log.txt');
    const fd = openSync(file, 'a');
    toClose.push(fd);
    const output: LogOutput = openLogOutput(fd);
    output.write(line(1));
    output.write(line(2));
    expect(readFileSync(file, 'utf8')).toBe('');
    await nextTurn();
    expect(readFileSync(file, 'utf8')).toBe(line(1) + line(2));
    output.write(line(3));
    output.flushSync();
    expect(readFileSync(file, 'utf8')).toBe(line(1) + line(2) + line(3));
  });
});

describe('processes writing to a pipe (a container stdout)', () => {
  /** Starts `script` with the FIFO's write end as its stdout. */
  function child(script: string, writer: number) {
    const proc = spawn(process.execPath, ['-e', script], { stdio: ['ignore', writer, 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    return { exited, stderr: () => stderr };
  }

  it("keeps running while nobody reads, and writes every held line at process.exit, in order (pino's lines too)", async () => {
    const { reader, writer } = fifo();
    const script = `
      const { AccessLog, createLogger } = require(${JSON.stringify(LOG)});
      const log = createLogger('info');
      const access = new AccessLog(log);
      for (let i = 0; i < 4000; i++) access.request({ requestId: String(i), route: 'x'.repeat(200) }, 1);
      let ticks = 0;
      const ticking = setInterval(() => ticks++, 1);
      setTimeout(() => {
        clearInterval(ticking);
        log.warn({ ticks }, 'last');
        process.exit(0); // lines still held are written now
      }, 300);`;
    const proc = child(script, writer);
    await sleep(600); // read nothing for a while: the pipe stays full
    const text = await readUntil(reader, (t) => t.includes('"msg":"last"'));
    expect(await proc.exited).toBe(0);
    const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(lines.slice(0, 4000).map((l) => l.request_id)).toEqual(Array.from({ length: 4000 }, (_, i) => String(i)));
    expect(lines[4000].msg).toBe('last');
    expect(lines[4000].ticks).toBeGreaterThan(10); // its event loop ran while the pipe was full
  });

  it('two processes on one pipe (workers of one pod): no line cut or mixed with another', async () => {
    const { reader, writer } = fifo();
    const script = (name: string) => `
      const { stdoutLog } = require(${JSON.stringify(LOG_OUTPUT)});
      const out = stdoutLog();
      let i = 0;
      const burst = () => {
        for (let n = 0; n < 200; n++, i++) out.write(JSON.stringify({ w: '${name}', i, pad: 'z'.repeat((i * 37) % 3000) }) + '\\n');
        if (i < 3000) setImmediate(burst);
      };
      burst();`;
    const a = child(script('a'), writer);
    const b = child(script('b'), writer);
    await sleep(200); // both fill the pipe first
    const text = await readUntil(reader, (t) => t.split('\n').length > 6000);
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);
    const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l)); // a cut or mixed line would not parse
    for (const w of ['a', 'b']) expect(lines.filter((l) => l.w === w).map((l) => l.i)).toEqual(Array.from({ length: 3000 }, (_, i) => i));
    expect(a.stderr() + b.stderr()).toBe('');
  });
});
