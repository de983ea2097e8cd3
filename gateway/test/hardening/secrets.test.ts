import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { Agent, request } from 'undici';
import WebSocket from 'ws';
import { parse, stringify } from 'yaml';
import { baseConfig, removeConfig, runCli, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { closedPort } from '../support/ports';
import { redisCli, startRedis, type TestRedis } from '../support/redis';
import { failedChecks, recordRow, tally, type ReliabilityRow } from '../support/reliability';
import { startUpstream, type TestUpstream } from '../support/upstream';

// Secrets and access, on one gateway with a password-protected Redis, an admin token and debug logs:
//  1. the public port never serves the admin API (key API, /metrics, health), whatever the path;
//  2. X-Forwarded-For is believed only from a trusted proxy, and the failed-key guard counts the
//     real client address, under concurrent attempts;
//  3. after varied traffic (every error path, the key API, the CLI, a refused reload, Redis frozen,
//     its password changed and Redis killed), no API key, admin token or Redis password appears in
//     any log line, the /metrics text, any answer or CLI output, or what the upstream received.
// The cases share the gateway and run in order; the last one scans what all of them produced.

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const ADMIN_TOKEN = `adm_${hex(16)}`;
const REDIS_PASSWORD = `rpw${hex(16)}`;
/** Set on Redis under the running gateway, then set back. */
const OTHER_REDIS_PASSWORD = `rpw${hex(16)}`;
const SEED_KEY = `sk_test_seed_${hex(12)}`;
const IMPORTED_KEY = `sk_live_imported_${hex(12)}`;
const TRUSTED_PROXY = '127.0.0.2';
const MAX_ATTEMPTS = 5;

let redis: TestRedis;
let upstream: TestUpstream;
let gateway: TestGateway;
let configFile: string;
let configText: string;
let env: NodeJS.ProcessEnv;

// ---------------------------------------------------------------------------------------------
// Everything the gateway said, and the secrets to look for in it.

interface Said {
  what: string;
  status: string;
  text: string;
  /** A plaintext key this answer is meant to show, once (the 201 of a create or rotate). */
  showsOnce?: string;
}
const answers: Said[] = [];
const cliOutputs: Said[] = [];

/** Answers by status, and envelope codes, for a row. */
function tallies(list: Said[]): Pick<ReliabilityRow, 'statuses' | 'codes'> {
  const statuses: Record<string, number> = {};
  const codes: Record<string, number> = {};
  for (const a of list) {
    tally(statuses, a.status);
    const code = /"code":"([a-z_]+)"/.exec(a.text)?.[1];
    if (code && Number(a.status) >= 400) tally(codes, code);
  }
  return { statuses, codes };
}

interface Secret {
  name: string;
  value: string;
  /** Its random part: any FRAGMENT characters of it count as a leak too (a truncated key is still a leak). */
  random?: string;
}
const FRAGMENT = 12;
const secrets: Secret[] = [];

function remember(name: string, value: string, prefix = /^(sk_(live|test)_(imported_|seed_)?|adm_|rpw)/): void {
  secrets.push({ name, value, random: value.replace(prefix, '') });
}

/** Names of the secrets found in `text`, whole or as a fragment of their random part. */
function findSecrets(text: string): string[] {
  return secrets
    .filter(({ value, random }) => {
      if (text.includes(value)) return true;
      if (!random) return false;
      for (let i = 0; i + FRAGMENT <= random.length; i++) if (text.includes(random.slice(i, i + FRAGMENT))) return true;
      return false;
    })
    .map((s) => s.name);
}

function headerLines(headers: Record<string, string | string[] | undefined>): string {
  return Object.entries(headers)
    .map(([name, value]) => `${name}: ${Array.isArray(value) ? value.join(', ') : value}`)
    .join('\n');
}

function noteAnswer(what: string, status: number | string, text: string, showsOnce?: string): void {
  answers.push({ what, status: String(status), text, showsOnce });
}

// ---------------------------------------------------------------------------------------------
// Clients: from a chosen loopback address (all of 127/8 is local on Linux), every answer noted.

const agents = new Map<string, Agent>();
function from(localAddress: string): Agent {
  let agent = agents.get(localAddress);
  if (!agent) agents.set(localAddress, (agent = new Agent({ localAddress, keepAliveTimeout: 1000 })));
  return agent;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

async function call(
  base: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string; address?: string; showsOnce?: (json: any) => string | undefined } = {},
): Promise<Answer> {
  const res = await request(`${base}${path}`, {
    method: method as 'GET',
    headers: options.headers,
    body: options.body,
    dispatcher: from(options.address ?? '127.0.0.1'),
  });
  let text: string;
  try {
    text = await res.body.text();
  } catch (err) {
    text = `[body cut: ${(err as Error).message}]`; // an upstream reset mid-body
  }
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  noteAnswer(`${method} ${base}${path}`, res.statusCode, `${res.statusCode}\n${headerLines(res.headers)}\n\n${text}`, options.showsOnce?.(json));
  return { status: res.statusCode, headers: res.headers, text, json };
}

const pub = (method: string, path: string, key?: string, options: Parameters<typeof call>[3] = {}) =>
  call(gateway.url, method, path, { ...options, headers: { ...(key === undefined ? {} : { 'x-api-key': key }), ...options.headers } });

function admin(method: string, path: string, body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${ADMIN_TOKEN}` }) {
  return call(gateway.adminUrl, method, path, {
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    // The plaintext of a created or rotated key is in its 201, and there only.
    showsOnce: (json) => (typeof json?.key === 'string' ? json.key : undefined),
  });
}

async function createKey(body: Record<string, unknown>, name: string): Promise<{ id: string; key: string }> {
  const res = await admin('POST', '/v1/keys', body);
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${res.text}`);
  remember(name, res.json.key);
  return res.json;
}

/** Raw bytes on a socket from `address`; returns what came back before the close (or `timeoutMs`). */
function raw(what: string, payload: string, address = '127.0.0.1', timeoutMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ port: gateway.port, host: '127.0.0.1', localAddress: address });
    let received = '';
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      noteAnswer(`raw ${what}`, /^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 'closed', received);
      resolve(received);
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', done);
    socket.on('close', done);
    socket.write(payload);
  });
}

/** A WebSocket through the gateway: 101, the upstream's hello, one echo; its head and frames noted. */
async function webSocketRoundTrip(path: string, key: string): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}${path}`, { headers: { 'x-api-key': key } });
  const seen: string[] = [];
  ws.on('upgrade', (res) => seen.push(`101\n${headerLines(res.headers)}\n`));
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('error', reject);
      ws.once('message', (hello) => {
        seen.push(String(hello));
        ws.once('message', (echo) => {
          seen.push(String(echo));
          resolve();
        });
        ws.send('ping');
      });
      timer = setTimeout(() => reject(new Error('no WebSocket echo')), 5000);
    });
  } finally {
    clearTimeout(timer);
    ws.terminate();
  }
  noteAnswer(`WebSocket ${path}`, 101, seen.join('\n'));
}

function isJsonObject(line: string): boolean {
  try {
    return typeof JSON.parse(line) === 'object';
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForLog(pattern: RegExp, fromLine: number, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gateway.output.slice(fromLine).some((line) => pattern.test(line))) return true;
    await sleep(50);
  }
  return false;
}

/** The access-log lines of the requests whose x-request-id starts with `prefix`. */
function accessLines(prefix: string): { request_id: string; client: string; status: number; code?: string }[] {
  return gateway.output
    .filter((line) => line.includes(`"request_id":"${prefix}`) && line.includes('"msg":"request"'))
    .map((line) => JSON.parse(line));
}

function connectOutcome(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

const redisAuthed = (password: string, ...args: string[]) => redisCli(redis.port, '-a', password, '--no-auth-warning', ...args);

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  redis = await startRedis({ destructive: true, password: REDIS_PASSWORD });
  upstream = await startUpstream();
  const dead = `http://127.0.0.1:${await closedPort()}`;
  env = { ...process.env, SECRETS_ADMIN_TOKEN: ADMIN_TOKEN, SECRETS_REDIS_URL: redis.url };
  configFile = writeConfig(
    baseConfig({
      admin: { host: '127.0.0.1', port: 0, token: '${SECRETS_ADMIN_TOKEN}', rotation_grace: '1h' },
      store: { redis: { url: '${SECRETS_REDIS_URL}' }, timeout_ms: 200, cache: { ttl: '1s' } },
      trusted_proxies: [TRUSTED_PROXY],
      rate_limiting: { failed_keys: { max_attempts: MAX_ATTEMPTS, per: '1m', block_for: '1m' } },
      log: { level: 'debug' },
      tiers: {
        free: { limits: [{ requests: 3, per: '1m' }], scopes: ['users:read'] },
        pro: { limits: [], scopes: ['*'] },
      },
      upstreams: {
        app: { targets: [upstream.url], timeout_ms: 2000 },
        dead: { targets: [dead], timeout_ms: 1000 },
      },
      routes: [
        { name: 'users', match: { path_prefix: '/v1/users' }, upstream: 'app', scopes: ['users:read'] },
        { name: 'v1', match: { path_prefix: '/v1' }, upstream: 'app', scopes: ['v1:all'] },
        { name: 'public', match: { path_prefix: '/public' }, upstream: 'app' },
        { name: 'upload', match: { path_prefix: '/upload' }, upstream: 'app', max_body_bytes: '1KB' },
        { name: 'timeout', match: { path_prefix: '/timeout' }, upstream: 'app', timeout_ms: 300 },
        { name: 'dead', match: { path_prefix: '/dead' }, upstream: 'dead' },
      ],
      // A plaintext key in the file itself, as a seed.
      keys: [{ name: 'seeded', tier: 'pro', key: SEED_KEY }],
    }),
  );
  configText = readFileSync(configFile, 'utf8');
  gateway = await startGateway(configFile, env);
  remember('admin token', ADMIN_TOKEN);
  remember('Redis password', REDIS_PASSWORD);
  remember('second Redis password', OTHER_REDIS_PASSWORD);
  secrets.push({ name: 'Redis URL with its password', value: redis.url });
  remember('seeded key', SEED_KEY);
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  await redis?.stop();
  await Promise.all([...agents.values()].map((agent) => agent.close()));
  if (configFile) removeConfig(configFile);
});

const gatewayAlive = () => gateway.process.exitCode === null && gateway.process.signalCode === null;

function finishRow(name: string, started: number, sent: number, checks: ReliabilityRow['checks'], extra: Partial<ReliabilityRow> = {}): ReliabilityRow {
  const row: ReliabilityRow = {
    suite: 'secrets',
    case: name,
    sent,
    statuses: {},
    codes: {},
    crashes: gatewayAlive() ? 0 : 1,
    checks,
    durationMs: Date.now() - started,
    ...extra,
  };
  recordRow(row);
  return row;
}

// ---------------------------------------------------------------------------------------------

it('the public port never serves the admin API, /metrics or health, even with the admin token', async () => {
  const started = Date.now();
  const victim = await createKey({ name: 'victim', tier: 'pro' }, 'victim key');
  const before = await admin('GET', '/v1/keys?limit=500');
  const mark = answers.length;
  const upstreamBefore = upstream.requests.length;

  const bearer = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const json = { ...bearer, 'content-type': 'application/json' };
  const attempts: [string, string, Record<string, string>, string?][] = [
    ['GET', '/v1/keys', bearer],
    ['GET', '/v1/keys?limit=500', bearer],
    ['GET', `/v1/keys/${victim.id}`, bearer],
    ['GET', `/v1/keys/${victim.id}/usage`, bearer],
    ['POST', `/v1/keys/${victim.id}/rotate`, bearer],
    ['DELETE', `/v1/keys/${victim.id}`, bearer],
    ['PATCH', `/v1/keys/${victim.id}`, json, JSON.stringify({ tier: 'free' })],
    ['POST', '/v1/keys', json, JSON.stringify({ name: 'made-on-the-public-port', tier: 'pro' })],
    ['GET', '/metrics', bearer],
    ['GET', '/healthz', bearer],
    ['GET', '/readyz', bearer],
    ['GET', '/admin', bearer],
    ['GET', '/admin/keys', bearer],
    ['GET', '/admin/v1/keys', bearer],
    ['GET', '//v1/keys', bearer],
    ['GET', '/v1/users/../../v1/keys', bearer],
    ['GET', '/public/../metrics', bearer],
    ['GET', '/%2e%2e/metrics', bearer],
    ['GET', '/v1/keys%2f', bearer],
    ['GET', '/METRICS', bearer],
    ['GET', '/v1/keys', { ...bearer, host: `127.0.0.1:${gateway.adminPort}` }],
    ['GET', '/v1/keys', { 'x-forwarded-host': `127.0.0.1:${gateway.adminPort}`, ...bearer }],
  ];
  const answered: Answer[] = [];
  for (const [method, path, headers, body] of attempts) answered.push(await pub(method, path, undefined, { headers, body }));
  // Absolute-form targets naming the admin listener, and the admin token used as an API key.
  const adminOrigin = `http://127.0.0.1:${gateway.adminPort}`;
  const absolute = [
    await raw('absolute-form key list', `GET ${adminOrigin}/v1/keys HTTP/1.1\r\nhost: 127.0.0.1:${gateway.adminPort}\r\nauthorization: Bearer ${ADMIN_TOKEN}\r\nconnection: close\r\n\r\n`),
    await raw('absolute-form /metrics', `GET ${adminOrigin}/metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n`),
  ];
  // From an address of its own: these count as failed key attempts.
  const tokenAsKey = await pub('GET', '/v1/keys', ADMIN_TOKEN, { address: '127.0.0.5' });

  const ours = answers.slice(mark);
  const adminData = ours.filter((a) => /"keys":\[|# HELP|# TYPE|"status":"(ok|ready)"|"next_cursor"|sk_live_|key_[0-9a-f]{20}/.test(a.text));
  const fromUpstream = answered.filter((a) => a.headers['x-upstream-port'] !== undefined).length + upstream.requests.length - upstreamBefore;
  // admin.host is 127.0.0.1: the admin port must not answer on another address, even a loopback one.
  const otherAddress = await connectOutcome('127.0.0.2', gateway.adminPort);
  const publicTreatment = answered.filter((a) =>
    [`401 missing_api_key`, '404 route_not_found', '400 invalid_request'].includes(`${a.status} ${a.json?.error?.code}`),
  );
  const rawRefused = absolute.filter((text) => /^HTTP\/1\.1 (400|401|404) /.test(text) && !text.includes('"keys"'));
  const after = await admin('GET', '/v1/keys?limit=500');
  const victimNow = await admin('GET', `/v1/keys/${victim.id}`);

  const row = finishRow(
    'Admin API unreachable on the public port',
    started,
    attempts.length + absolute.length + 1,
    [
      {
        name: 'every admin path on the public port got the public treatment (401 missing_api_key, 404 route_not_found, or 400 invalid_request for an encoded slash)',
        pass: publicTreatment.length === attempts.length,
        detail: answered
          .filter((a) => !publicTreatment.includes(a))
          .map((a) => `${a.status} ${a.text.slice(0, 80)}`)
          .join('; '),
      },
      {
        name: 'absolute-form requests naming the admin listener refused, not proxied to it',
        pass: rawRefused.length === absolute.length,
        detail: absolute.map((t) => t.split('\r\n')[0]).join('; '),
      },
      { name: 'the admin token is not an API key (401 invalid_api_key)', pass: tokenAsKey.status === 401 && tokenAsKey.json?.error?.code === 'invalid_api_key' },
      { name: 'no answer carried admin data (key list, key ids, metrics, health)', pass: adminData.length === 0, detail: adminData.map((a) => a.what).join('; ') },
      { name: 'nothing was forwarded to the upstream', pass: fromUpstream === 0 },
      { name: 'the admin listener is bound to admin.host only (127.0.0.2:<admin port> refused)', pass: otherAddress === 'ECONNREFUSED', detail: otherAddress },
      {
        name: 'the admin API did nothing: same keys, the victim key neither rotated, revoked nor changed',
        pass:
          after.json?.keys?.length === before.json?.keys?.length &&
          victimNow.json?.status === 'active' &&
          victimNow.json?.tier === 'pro' &&
          victimNow.json?.rotated_at === undefined,
        detail: `keys ${before.json?.keys?.length} → ${after.json?.keys?.length}, victim ${victimNow.text}`,
      },
    ],
    tallies(ours),
  );
  expect(failedChecks(row)).toBe('');
});

it('X-Forwarded-For is believed only from a trusted proxy; the failed-key guard counts the real client', async () => {
  const started = Date.now();
  const mark = answers.length;
  const key = (await createKey({ name: 'xff', tier: 'pro' }, 'X-Forwarded-For test key')).key;
  const spoof = () => `203.0.113.${1 + Math.floor(Math.random() * 254)}`;
  const wrongKey = () => `sk_live_${hex(16)}`;
  const untrusted = '127.0.0.3';
  const attempts = 40;

  // Untrusted peer: its X-Forwarded-For is replaced by its own address, in the log and upstream, and
  // the other forwarding headers an upstream might believe (RFC 7239 Forwarded, X-Real-IP) dropped.
  const forged = { 'x-forwarded-for': spoof(), forwarded: `for=${spoof()};proto=https`, 'x-real-ip': spoof(), 'x-forwarded-proto': 'https' };
  const echoed = await pub('GET', '/public/headers', key, { address: untrusted, headers: { ...forged, 'x-request-id': 'xff-untrusted-echo' } });
  // Then wrong keys, 8 at a time, each claiming another client address.
  let next = 0;
  const untrustedAnswers: Answer[] = [];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < attempts) {
        const i = next++;
        const xff = i % 2 === 0 ? spoof() : `${spoof()}, ${spoof()}`;
        untrustedAnswers.push(await pub('GET', '/public/ok', wrongKey(), { address: untrusted, headers: { 'x-forwarded-for': xff, 'x-request-id': `xff-untrusted-${i}` } }));
      }
    }),
  );
  // Blocked now: a valid key from that peer too, on a plain request and on a WebSocket upgrade.
  const blockedValid = await pub('GET', '/public/ok', key, { address: untrusted, headers: { 'x-forwarded-for': spoof(), 'x-request-id': 'xff-untrusted-valid' } });
  const upgrade =
    'upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n' +
    `sec-websocket-key: ${randomBytes(16).toString('base64')}\r\nx-api-key: ${key}\r\nx-forwarded-for: ${spoof()}\r\n`;
  const blockedUpgrade = await raw(
    'WebSocket upgrade from a blocked peer',
    `GET /public/ws HTTP/1.1\r\nhost: 127.0.0.1\r\n${upgrade}x-request-id: xff-untrusted-ws\r\n\r\n`,
    untrusted,
  );

  // Trusted proxy: client A guesses keys, with a forged entry left of the one the proxy appended;
  // clients B..F guess a few times each (under the limit), all at the same time.
  const clientA = '198.51.100.10';
  const others = ['198.51.100.11', '198.51.100.12', '198.51.100.13', '198.51.100.14', '198.51.100.15'];
  const viaProxy = (xff: string | undefined, apiKey: string, id: string, path = '/public/ok') =>
    pub('GET', path, apiKey, { address: TRUSTED_PROXY, headers: { ...(xff ? { 'x-forwarded-for': xff } : {}), 'x-request-id': id } });
  const [aAnswers, ...othersAnswers] = await Promise.all([
    Promise.all(Array.from({ length: 12 }, (_, i) => viaProxy(`${spoof()}, ${clientA}`, wrongKey(), `xff-trusted-a-${i}`))),
    ...others.map((client, c) => Promise.all(Array.from({ length: MAX_ATTEMPTS - 1 }, (_, i) => viaProxy(client, wrongKey(), `xff-trusted-${c}-${i}`)))),
  ]);
  const othersValid = await Promise.all(others.map((client, c) => viaProxy(client, key, `xff-trusted-valid-${c}`, '/public/headers')));
  // A trusted proxy's own Forwarded / X-Real-IP reach the upstream as it sent them.
  const proxyHeaders = { forwarded: 'for=198.51.100.11;proto=https', 'x-real-ip': '198.51.100.11', 'x-request-id': 'xff-trusted-forwarded' };
  const proxyEcho = await pub('GET', '/public/headers', key, { address: TRUSTED_PROXY, headers: { ...proxyHeaders, 'x-forwarded-for': '198.51.100.11' } });
  const aValid = await viaProxy(clientA, key, 'xff-trusted-a-valid');
  const proxyItself = await viaProxy(undefined, key, 'xff-trusted-proxy-itself');
  const guardKeys = (await redisAuthed(REDIS_PASSWORD, '--scan', '--pattern', 'sluice:failed-keys*')).split('\n').filter(Boolean);

  await sleep(300); // the access log is written asynchronously
  const untrustedLog = accessLines('xff-untrusted-');
  const trustedALog = accessLines('xff-trusted-a-');
  const count = (list: Answer[], status: number, code: string) => list.filter((a) => a.status === status && a.json?.error?.code === code).length;
  const unauthorised = count(untrustedAnswers, 401, 'invalid_api_key');
  const blocked = count(untrustedAnswers, 429, 'too_many_failed_attempts');
  const aUnauthorised = count(aAnswers, 401, 'invalid_api_key');
  const othersFine = othersAnswers.flat().every((a) => a.status === 401 && a.json?.error?.code === 'invalid_api_key');
  const forwardedFor = othersValid.map((a) => a.json?.headers?.['x-forwarded-for']);

  const row = finishRow(
    'Spoofed X-Forwarded-For and the failed-key guard',
    started,
    answers.length - mark,
    [
      {
        name: `untrusted peer, ${attempts} wrong keys each with another forged X-Forwarded-For: at most ${MAX_ATTEMPTS} × 401, then 429 too_many_failed_attempts`,
        pass: unauthorised <= MAX_ATTEMPTS && unauthorised + blocked === attempts && blocked >= attempts - MAX_ATTEMPTS,
        detail: `401: ${unauthorised}, 429: ${blocked}`,
      },
      {
        name: 'the blocked peer is refused with a valid key too, on a request and on a WebSocket upgrade',
        pass: blockedValid.status === 429 && /^HTTP\/1\.1 429 [^]*too_many_failed_attempts/.test(blockedUpgrade),
        detail: `${blockedValid.status}, ${blockedUpgrade.split('\r\n')[0]}`,
      },
      {
        name: 'the upstream saw the untrusted peer as X-Forwarded-For, and none of its forged Forwarded, X-Real-IP or X-Forwarded-Proto',
        pass:
          echoed.json?.headers?.['x-forwarded-for'] === untrusted &&
          echoed.json?.headers?.forwarded === undefined &&
          echoed.json?.headers?.['x-real-ip'] === undefined &&
          echoed.json?.headers?.['x-forwarded-proto'] === 'http',
        detail: ['x-forwarded-for', 'forwarded', 'x-real-ip', 'x-forwarded-proto'].map((h) => `${h}: ${echoed.json?.headers?.[h]}`).join(', '),
      },
      {
        name: "the access log names the untrusted peer's real address on every one of its requests",
        pass: untrustedLog.length === attempts + 3 && untrustedLog.every((l) => l.client === untrusted),
        detail: `${untrustedLog.length} lines, clients: ${[...new Set(untrustedLog.map((l) => l.client))].join(', ')}`,
      },
      {
        name: `behind the trusted proxy, client A (forged entries left of it) is blocked after at most ${MAX_ATTEMPTS} × 401, and with a valid key`,
        pass: aUnauthorised <= MAX_ATTEMPTS && count(aAnswers, 429, 'too_many_failed_attempts') === aAnswers.length - aUnauthorised && aValid.status === 429,
        detail: `401: ${aUnauthorised} of ${aAnswers.length}, valid key: ${aValid.status}`,
      },
      {
        name: `clients B..F behind the same proxy (${MAX_ATTEMPTS - 1} wrong keys each) are not blocked: 401s, then 200 with a valid key`,
        pass: othersFine && othersValid.every((a) => a.status === 200) && proxyItself.status === 200,
        detail: `valid: ${othersValid.map((a) => a.status).join(' ')}, the proxy itself: ${proxyItself.status}`,
      },
      {
        name: "the upstream gets the trusted proxy's chain with the proxy appended, and its Forwarded and X-Real-IP",
        pass:
          forwardedFor.every((xff, c) => xff === `${others[c]}, ${TRUSTED_PROXY}`) &&
          proxyEcho.json?.headers?.forwarded === proxyHeaders.forwarded &&
          proxyEcho.json?.headers?.['x-real-ip'] === proxyHeaders['x-real-ip'],
        detail: `${forwardedFor.join(' | ')}; forwarded: ${proxyEcho.json?.headers?.forwarded}, x-real-ip: ${proxyEcho.json?.headers?.['x-real-ip']}`,
      },
      {
        name: 'the access log names client A, not the forged entries',
        pass: trustedALog.length === aAnswers.length + 1 && trustedALog.every((l) => l.client === clientA),
        detail: `${trustedALog.length} lines, clients: ${[...new Set(trustedALog.map((l) => l.client))].join(', ')}`,
      },
      {
        name: 'the guard counted real addresses only (no counter for a forged one in Redis)',
        pass: guardKeys.some((k) => k.endsWith(untrusted)) && guardKeys.some((k) => k.endsWith(clientA)) && !guardKeys.some((k) => k.includes('203.0.113.')),
        detail: guardKeys.join(', '),
      },
    ],
    tallies(answers.slice(mark)),
  );
  expect(failedChecks(row)).toBe('');
});

it('no API key, admin token or Redis password in any log line, the metrics, any answer or CLI output', async () => {
  const started = Date.now();
  const mark = answers.length;
  const logMark = gateway.output.length;
  const guesser = '127.0.0.9'; // wrong keys come from here, so the guard never blocks the others

  // Keys of every kind, through the key API (each 201 shows its plaintext once).
  const free = await createKey({ name: 'free', tier: 'free', scopes: ['users:read'] }, 'free key');
  const secondFree = await createKey({ name: 'free-2', tier: 'free' }, 'second free key');
  const pro = await createKey({ name: 'pro', tier: 'pro' }, 'pro key');
  const revoked = await createKey({ name: 'to revoke', tier: 'pro' }, 'revoked key');
  const rotatedOut = await createKey({ name: 'to rotate', tier: 'pro' }, 'rotated-out key');
  const firstUsedInOutage = await createKey({ name: 'unused until the outage', tier: 'pro' }, 'key first used during the outage');
  remember('imported key', IMPORTED_KEY);
  const refusedImport = `sk_live_${hex(16)}`;
  remember('key of a refused import', refusedImport);
  const inBrokenJson = `sk_live_${hex(16)}`;
  remember('key inside a malformed admin body', inBrokenJson);
  const nearMiss = pro.key.slice(0, -1) + (pro.key.endsWith('A') ? 'B' : 'A'); // a typo of a real key
  const wrongKeys = [nearMiss, ...Array.from({ length: 7 }, () => `sk_live_${hex(16)}`)];
  wrongKeys.forEach((k, i) => remember(`wrong key ${i}`, k));

  // The key API: every endpoint, its refusals, and wrong tokens.
  await admin('POST', '/v1/keys', { name: 'imported', tier: 'pro', key: IMPORTED_KEY }); // 201
  await admin('POST', '/v1/keys', { name: 'imported again', tier: 'pro', key: IMPORTED_KEY }); // 409 key_exists
  await admin('POST', '/v1/keys', { name: 'unknown tier', tier: 'gold', key: refusedImport }); // 422
  await admin('POST', '/v1/keys', `{"name":"broken","tier":"pro","key":"${inBrokenJson}"`); // 400
  await admin('POST', '/v1/keys', { name: 'x', tier: 'pro', key: 'short' }); // 400
  await admin('GET', '/v1/keys?limit=500');
  await admin('GET', `/v1/keys/${pro.id}`);
  await admin('PATCH', `/v1/keys/${pro.id}`, { name: 'pro, renamed' });
  await admin('GET', `/v1/keys/${free.id}/usage`);
  const rotation = await admin('POST', `/v1/keys/${rotatedOut.id}/rotate`);
  remember('rotated-in key', rotation.json.key);
  await admin('GET', '/v1/keys/key_00000000000000000000'); // 404
  await admin('GET', '/v1/nothing-here');
  const wrongTokens: Record<string, string>[] = [
    { authorization: 'Bearer wrong-token' },
    {},
    { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` },
    { authorization: `Bearer ${ADMIN_TOKEN}x` },
    { authorization: ADMIN_TOKEN },
  ];
  for (const headers of wrongTokens) await admin('GET', '/v1/keys', undefined, headers);
  await admin('GET', `/v1/keys?token=${ADMIN_TOKEN}`, undefined, {});
  for (const path of ['/metrics', '/healthz', '/readyz']) await admin('GET', path);

  // The public port: successes and every failure it has an envelope for.
  for (const key of [SEED_KEY, pro.key, rotatedOut.key, rotation.json.key, IMPORTED_KEY, revoked.key]) await pub('GET', '/v1/users/ok', key);
  await pub('GET', '/v1/users/headers', pro.key); // the upstream echoes the headers it got
  await pub('POST', '/v1/users/echo', pro.key, { body: 'hello', headers: { 'content-type': 'text/plain' } });
  for (let i = 0; i < 4; i++) await pub('GET', '/v1/users/ok', free.key); // 3 × 200, then 429
  await pub('GET', '/v1/orders/ok', free.key); // 403: the route needs v1:all
  await pub('GET', '/nowhere', pro.key); // 404
  await pub('POST', '/upload/echo', pro.key, { body: 'x'.repeat(2048) }); // 413
  await pub('GET', '/timeout/slow?ms=2000', pro.key); // 504
  await pub('GET', '/dead/ok', pro.key); // 502
  await pub('GET', '/public/status?code=500', pro.key);
  await pub('GET', '/public/reset', pro.key);
  await pub('GET', '/public/garbage', pro.key);
  await pub('GET', '/public/ok', undefined); // 401 missing
  await pub('GET', '/public/ok', pro.key, { headers: { 'x-big': 'b'.repeat(20_000) } }); // 431
  await raw('malformed request', `GET /public/ok HTTP/1.1\r\nhost: x\r\nx-api-key: ${pro.key}\r\nno colon here\r\n\r\n`);
  await raw('two keys', `GET /public/ok HTTP/1.1\r\nhost: x\r\nx-api-key: ${pro.key}\r\nx-api-key: ${SEED_KEY}\r\nconnection: close\r\n\r\n`, guesser);
  await webSocketRoundTrip('/public/ws', pro.key);
  for (const key of wrongKeys) await pub('GET', '/public/ok', key, { address: guesser }); // 5 × 401, then 429
  await admin('DELETE', `/v1/keys/${revoked.id}`);
  let revokedAnswer = await pub('GET', '/v1/users/ok', revoked.key);
  for (let i = 0; i < 20 && revokedAnswer.status === 200; i++) {
    await sleep(100);
    revokedAnswer = await pub('GET', '/v1/users/ok', revoked.key);
  }

  // The CLI on the same Redis (it reads the password from the same config).
  const cli = async (what: string, args: string[]) => {
    const out = await runCli(args, env);
    cliOutputs.push({ what: `sluice ${what}`, status: String(out.code), text: out.stdout + out.stderr });
  };
  await cli('keys list', ['keys', 'list', '--json', '--config', configFile]);
  await cli('keys export', ['keys', 'export', '--config', configFile]);
  const checkConfig = (what: string) => cli(`config check (${what})`, ['config', 'check', configFile]);

  // Reloads refused: a schema error with a secret as the value of a mistyped field, then broken YAML.
  const broken = stringify({ ...(parse(configText) as object), tiers: { free: { limits: [{ requests: 3, per: 'soon' }] } } }) + `\nstore_password: ${REDIS_PASSWORD}\n`;
  writeFileSync(configFile, broken);
  const refusedSchema = await waitForLog(/config reload refused/, logMark);
  await checkConfig('schema error');
  const refusedAt = gateway.output.length;
  writeFileSync(configFile, `${configText}\nadmin_token_copy: [${ADMIN_TOKEN}, {\n`);
  const refusedYaml = await waitForLog(/config reload refused/, refusedAt);
  await checkConfig('YAML error');
  writeFileSync(configFile, configText);
  const reloaded = await waitForLog(/"msg":"config reloaded/, refusedAt);

  // Redis frozen: uncached keys and the key API get 503s, limits fall back to local ones.
  redis.pause();
  await sleep(1200); // past the key cache TTL
  await pub('GET', '/v1/users/ok', firstUsedInOutage.key);
  await pub('GET', '/public/ok', `sk_live_${hex(16)}`, { address: '127.0.0.10' });
  await pub('GET', '/v1/users/ok', secondFree.key);
  await admin('GET', '/v1/keys');
  await admin('POST', '/v1/keys', { name: 'during the outage', tier: 'pro' });
  const unreachable = await waitForLog(/key store unreachable/, logMark);
  redis.resume();

  // Its password changed underneath: reconnects fail to authenticate.
  await redisAuthed(REDIS_PASSWORD, 'CONFIG', 'SET', 'requirepass', OTHER_REDIS_PASSWORD);
  await redisAuthed(OTHER_REDIS_PASSWORD, 'CLIENT', 'KILL', 'TYPE', 'normal');
  await redisAuthed(OTHER_REDIS_PASSWORD, 'CLIENT', 'KILL', 'TYPE', 'pubsub');
  await sleep(1500);
  await pub('GET', '/v1/users/ok', firstUsedInOutage.key);
  await admin('GET', '/v1/keys');
  await redisAuthed(OTHER_REDIS_PASSWORD, 'CONFIG', 'SET', 'requirepass', REDIS_PASSWORD);
  // Set back: the next reconnect authenticates again.
  const restoredAt = Date.now();
  let recoveredMs = NaN;
  for (let i = 0; i < 50 && Number.isNaN(recoveredMs); i++) {
    await sleep(100);
    if ((await admin('GET', '/v1/keys?limit=1')).status === 200) recoveredMs = Date.now() - restoredAt;
  }

  // Killed, then back empty: the marker is missing.
  await redis.kill();
  await sleep(1500);
  await pub('GET', '/v1/users/ok', `sk_live_${hex(16)}`, { address: '127.0.0.11' });
  await admin('GET', `/v1/keys/${pro.id}`);
  await redis.restart();
  const markerMissing = await waitForLog(/MARKER MISSING/, logMark);
  await pub('GET', '/v1/users/ok', firstUsedInOutage.key);

  // Everything it said: the metrics now, then the rest of the log (flushed on exit).
  const metrics = await admin('GET', '/metrics');
  const exitCode = await gateway.stop();

  const leaks = (what: string, text: string) => findSecrets(text).map((name) => `${name} in ${what}`);
  const logLeaks = gateway.output.flatMap((line, i) => leaks(`log line ${i}`, line));
  const metricsLeaks = leaks('/metrics', metrics.text);
  const answerLeaks = answers.flatMap((a) => leaks(a.what, a.showsOnce ? a.text.split(a.showsOnce).join('[shown once]') : a.text));
  const cliLeaks = cliOutputs.flatMap((o) => leaks(o.what, o.text));
  const upstreamLeaks = upstream.requests.flatMap((r) => leaks(`upstream request ${r.url}`, `${r.url}\n${JSON.stringify(r.headers)}`));
  const showedOnce = answers.filter((a) => a.showsOnce).length;

  // The scan itself must be able to fail: it finds every secret planted whole or as a fragment.
  const planted = secrets.filter(
    (s) =>
      findSecrets(`{"level":50,"msg":"boom","err":"AUTH ${s.value} failed"}`).includes(s.name) &&
      (!s.random || findSecrets(`{"level":30,"msg":"x","key":"${s.random.slice(4, 4 + FRAGMENT)}"}`).includes(s.name)),
  );
  const notJson = gateway.output.filter((line) => !isJsonObject(line));
  const events = {
    // A request node's parser refused gets its access-log line (pipeline/answer.ts), with node's code.
    malformed: gateway.output.some((l) => l.includes('"parser_error"')),
    refusedSchema,
    refusedYaml,
    reloaded,
    unreachable,
    markerMissing,
  };
  const levels = new Set(gateway.output.map((line) => /"level":(\d+)/.exec(line)?.[1]));
  const mine = answers.slice(mark);
  const { statuses, codes } = tallies(mine);
  const wanted = ['101', '200', '201', '400', '401', '403', '404', '409', '413', '422', '429', '431', '500', '502', '503', '504'];
  const exportLines = cliOutputs.find((o) => o.what === 'sluice keys export')!.text.split('\n').filter(Boolean).length;

  const row = finishRow(
    'Secrets in logs, metrics, answers and CLI output',
    started,
    mine.length,
    [
      {
        name: `${secrets.length} secrets to look for, each long, random and distinct`,
        pass:
          secrets.length >= 20 &&
          new Set(secrets.map((s) => s.value)).size === secrets.length &&
          secrets.every((s) => s.value.length >= 24 && (!s.random || s.random.length >= 24)),
      },
      {
        name: 'the scan finds each one planted in a log line, whole or as a 12-character fragment',
        pass: planted.length === secrets.length && findSecrets('{"level":30,"msg":"request","client":"127.0.0.1"}').length === 0,
      },
      {
        name: 'the traffic reached every status we meant to cause',
        pass: wanted.every((s) => statuses[s]),
        detail: `missing: ${wanted.filter((s) => !statuses[s]).join(' ') || 'none'}`,
      },
      {
        // No line is logged at debug any more (a parser refusal was, before it got an access-log line).
        name: 'the log has info, warn and error lines: malformed request, refused reloads, Redis frozen, marker missing',
        pass: ['30', '40', '50'].every((l) => levels.has(l)) && Object.values(events).every(Boolean),
        detail: `levels ${[...levels].join(' ')}; ${JSON.stringify(events)}`,
      },
      { name: 'the revoked key is refused (401)', pass: revokedAnswer.status === 401 },
      { name: 'the key API answers again within 5 s of the Redis password being set back', pass: recoveredMs <= 5000, detail: `${recoveredMs} ms` },
      {
        name: `the CLI worked on the password-protected Redis (${exportLines} export lines), config check refused both broken files`,
        pass: cliOutputs.every((o) => o.status === (o.what.includes('config check') ? '1' : '0')) && exportLines > 5,
        detail: cliOutputs.map((o) => `${o.what}: ${o.status}`).join(', '),
      },
      {
        name: 'every log line is JSON from the logger: nothing bypasses it (and its redaction)',
        pass: notJson.length === 0,
        detail: `${notJson.length} other lines, e.g. ${notJson.slice(0, 2).join(' / ')}`,
      },
      { name: `no secret in any of ${gateway.output.length} log lines`, pass: logLeaks.length === 0, detail: logLeaks.slice(0, 5).join('; ') },
      { name: `no secret in the /metrics text (${metrics.text.length} bytes)`, pass: metricsLeaks.length === 0, detail: metricsLeaks.join('; ') },
      {
        name: `no secret in any of ${answers.length} answers (heads and bodies), but each new key in its own 201 (${showedOnce})`,
        pass: answerLeaks.length === 0,
        detail: answerLeaks.slice(0, 5).join('; '),
      },
      { name: 'no secret in the CLI output (list, export, config check)', pass: cliLeaks.length === 0, detail: cliLeaks.join('; ') },
      {
        name: `no key (nor any x-api-key header) forwarded to the upstream (${upstream.requests.length} requests)`,
        pass: upstreamLeaks.length === 0 && upstream.requests.every((r) => r.headers['x-api-key'] === undefined),
        detail: upstreamLeaks.slice(0, 5).join('; '),
      },
      { name: 'the gateway ran to the end and stopped cleanly on SIGTERM', pass: exitCode === 0, detail: `exit code ${exitCode}` },
    ],
    {
      statuses,
      codes,
      crashes: exitCode === 0 ? 0 : 1,
      figures: {
        'secrets looked for': secrets.length,
        'log lines scanned': gateway.output.length,
        'answers scanned': answers.length,
        'metrics bytes scanned': metrics.text.length,
        'key API back after the Redis password was set back, ms': recoveredMs,
      },
    },
  );
  expect(failedChecks(row)).toBe('');
});
