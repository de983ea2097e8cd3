import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { envelopeProblem } from '../support/envelope';
import { expectEnvelope, send, type SimpleResponse } from '../support/http';
import { changed, scrape, seriesKey } from '../support/metrics';
import { startUpstream, type TestUpstream } from '../support/upstream';

// Transport failures that used to escape the error mapping as 500 internal_error (headers over
// 16 KB, TLS failures), the other broken answers an upstream can give, and the breaker settling
// after each kind of failure. Real gateway process, real sockets; the broken upstreams are raw
// node:net / node:https servers started here.

const KEY = 'sk_test_upstream_failures_0001';
const COOLDOWN_MS = 300;

/** What a raw upstream answers to each request (one request per connection, then it closes). */
type RawMode =
  | 'ok'
  | 'overflow' // a response head of ~20 KB, over undici's 16 KB limit
  | 'garbage' // bytes that are not HTTP
  | 'banner' // another protocol's greeting (an http target pointed at an SSH port)
  | 'reset-mid-headers' // half a head, then a TCP RST
  | 'close-mid-headers' // half a head, then a FIN
  | 'short-body' // Content-Length: 100, five bytes, then a FIN
  | 'stall-mid-headers'; // half a head, then nothing

interface RawUpstream {
  url: string;
  mode: RawMode;
  requests: number;
  close(): Promise<void>;
}

const OVERSIZED_HEAD = 'HTTP/1.1 200 OK\r\n' + Array.from({ length: 20 }, (_, i) => `x-filler-${i}: ${'a'.repeat(1000)}\r\n`).join('') + 'content-length: 0\r\n\r\n';

function answer(socket: net.Socket, mode: RawMode): void {
  const partialHead = 'HTTP/1.1 200 OK\r\ncontent-type: text/pl';
  switch (mode) {
    case 'ok':
      return void socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{"ok":true}');
    case 'overflow':
      return void socket.end(OVERSIZED_HEAD);
    case 'garbage':
      return void socket.end(Buffer.from('\x00\x01garbage not http\r\n\r\n', 'latin1'));
    case 'banner':
      return void socket.end('SSH-2.0-OpenSSH_9.6\r\n');
    case 'reset-mid-headers':
      return void socket.write(partialHead, () => socket.resetAndDestroy());
    case 'close-mid-headers':
      return void socket.end(partialHead);
    case 'short-body':
      return void socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\nshort');
    case 'stall-mid-headers':
      return void socket.write(partialHead);
  }
}

async function startRawUpstream(mode: RawMode): Promise<RawUpstream> {
  const sockets = new Set<net.Socket>();
  const upstream: RawUpstream = { url: '', mode, requests: 0, close: async () => undefined };
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let received = '';
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      if (!received.includes('\r\n\r\n')) return; // bodiless requests only: the head is the request
      received = '';
      upstream.requests++;
      answer(socket, upstream.mode);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  upstream.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
  return upstream;
}

interface TlsUpstream {
  url: string;
  /** TLS handshakes the server saw fail (the gateway refusing its certificate) */
  handshakeFailures: number;
  /** requests that got through */
  requests: number;
  useCertificate(cert: { key: Buffer; cert: Buffer }): void;
  close(): Promise<void>;
}

async function startTlsUpstream(cert: { key: Buffer; cert: Buffer }): Promise<TlsUpstream> {
  const sockets = new Set<net.Socket>();
  const server = https.createServer(cert);
  const upstream: TlsUpstream = {
    url: '',
    handshakeFailures: 0,
    requests: 0,
    useCertificate: (next) => server.setSecureContext(next),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', () => upstream.handshakeFailures++);
  server.on('request', (_req, res) => {
    upstream.requests++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return upstream;
}

let certDir: string;
let untrusted: { key: Buffer; cert: Buffer }; // self-signed, trusted by nobody
let trusted: { key: Buffer; cert: Buffer }; // self-signed, but the gateway trusts it (NODE_EXTRA_CA_CERTS)

/** A fresh key and self-signed certificate for 127.0.0.1, made with openssl at run time. */
function selfSigned(name: string): { key: Buffer; cert: Buffer } {
  const key = path.join(certDir, `${name}.key`);
  const cert = path.join(certDir, `${name}.crt`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-days', '1', '-keyout', key, '-out', cert],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

let gateway: TestGateway;
let configFile: string;
let healthy: TestUpstream;
let overflow: RawUpstream;
let faults: RawUpstream;
let selfSignedTls: TlsUpstream;
// One upstream per breaker case, each with its own breaker (failures: 1, cooldown 300 ms).
const breakerRaw: Record<string, RawUpstream> = {};
let breakerTls: TlsUpstream;

beforeAll(async () => {
  certDir = mkdtempSync(path.join(tmpdir(), 'sluice-tls-'));
  untrusted = selfSigned('untrusted');
  trusted = selfSigned('trusted');

  healthy = await startUpstream();
  overflow = await startRawUpstream('overflow');
  faults = await startRawUpstream('ok');
  selfSignedTls = await startTlsUpstream(untrusted);
  breakerTls = await startTlsUpstream(untrusted);
  for (const kind of ['overflow', 'reset', 'garbage', 'mixed']) breakerRaw[kind] = await startRawUpstream('ok');

  const breaker = { failures: 1, cooldown: `${COOLDOWN_MS}ms` };
  const upstreams: Record<string, unknown> = {
    healthy: { targets: [healthy.url], timeout_ms: 2000 },
    overflow: { targets: [overflow.url], timeout_ms: 2000, breaker: { failures: 100 } },
    faults: { targets: [faults.url], timeout_ms: 2000, breaker: { failures: 100 } },
    tls: { targets: [selfSignedTls.url], timeout_ms: 2000, breaker: { failures: 100 } },
    // The self-signed target first: the first request picks it, fails the handshake, retries on the second.
    mixed: { targets: [selfSignedTls.url, healthy.url], timeout_ms: 2000, breaker: { failures: 1, cooldown: '30s' } },
    'brk-tls': { targets: [breakerTls.url], timeout_ms: 2000, breaker },
    plaintls: { targets: [selfSignedTls.url.replace('https:', 'http:')], timeout_ms: 2000, breaker: { failures: 100 } },
  };
  const routes: Record<string, unknown>[] = [
    { name: 'healthy', match: { path_prefix: '/healthy' }, upstream: 'healthy' },
    { name: 'overflow', match: { path_prefix: '/overflow' }, upstream: 'overflow' },
    { name: 'faults', match: { path_prefix: '/faults' }, upstream: 'faults', retries: 0 },
    { name: 'stall', match: { path_prefix: '/stall' }, upstream: 'faults', retries: 0, timeout_ms: 500 },
    { name: 'tls', match: { path_prefix: '/tls' }, upstream: 'tls' },
    { name: 'mixed', match: { path_prefix: '/mixed' }, upstream: 'mixed' }, // retries: default 1
    { name: 'brk-tls', match: { path_prefix: '/brk-tls' }, upstream: 'brk-tls', retries: 0 },
    { name: 'plaintls', match: { path_prefix: '/plaintls' }, upstream: 'plaintls', retries: 0 },
  ];
  for (const [kind, raw] of Object.entries(breakerRaw)) {
    upstreams[`brk-${kind}`] = { targets: [raw.url], timeout_ms: 2000, breaker };
    routes.push({ name: `brk-${kind}`, match: { path_prefix: `/brk-${kind}` }, upstream: `brk-${kind}`, retries: 0 });
  }
  configFile = writeConfig(
    baseConfig({
      tiers: { t: { limits: [], scopes: ['*'] } },
      upstreams,
      routes,
      keys: [{ name: 'k', tier: 't', key: KEY }],
    }),
  );
  gateway = await startGateway(configFile, { ...process.env, NODE_EXTRA_CA_CERTS: path.join(certDir, 'trusted.crt') });
});

afterAll(async () => {
  await gateway?.stop();
  await Promise.all([healthy?.close(), overflow?.close(), faults?.close(), selfSignedTls?.close(), breakerTls?.close(), ...Object.values(breakerRaw).map((raw) => raw.close())]);
  if (configFile) removeConfig(configFile);
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

const get = (route: string) => send(`${gateway.url}${route}`, { headers: { 'x-api-key': KEY } });

/** The answer is a valid envelope (support/envelope's checker) with this status and code. */
function expectGatewayError(res: SimpleResponse, status: number, code: string): void {
  expect(envelopeProblem(res.status, res.headers, res.text)).toBeUndefined();
  expectEnvelope(res, status, code);
}

// Log lines are checked per test, so one test's failure does not fail the ones after it. The
// gateway's lines reach us through a pipe, a moment after its answers: let the last test's arrive.
let logMark = 0;
beforeEach(async () => {
  await delay(50);
  logMark = gateway.output.length;
});

/** "unexpected error" lines the gateway logged during this test (a 500 logs one). */
function unexpectedErrors(): string[] {
  return gateway.output.slice(logMark).filter((line) => line.includes('unexpected error'));
}

async function expectStillServing(): Promise<void> {
  expect(gateway.process.exitCode).toBeNull();
  expect((await get('/healthy/ok')).status).toBe(200);
}

describe('answers that used to be a 500', () => {
  it('502 bad_gateway for an answer with more than 16 KB of headers; nothing unexpected logged; the gateway keeps serving', async () => {
    const before = await scrape(gateway.adminUrl);
    expectGatewayError(await get('/overflow/ok'), 502, 'bad_gateway');
    expect(overflow.requests).toBeGreaterThanOrEqual(1);
    expect(unexpectedErrors()).toEqual([]);
    // counted as the upstream's failure
    const deltas = changed(before, await scrape(gateway.adminUrl), 'sluice_upstream_errors_total');
    expect(deltas[seriesKey('sluice_upstream_errors_total', { upstream: 'overflow', code: 'bad_gateway' })]).toBe(1);
    await expectStillServing();
  });

  it('502 bad_gateway for an https upstream whose certificate is self-signed', async () => {
    const failures = selfSignedTls.handshakeFailures;
    expectGatewayError(await get('/tls/ok'), 502, 'bad_gateway');
    expect(selfSignedTls.handshakeFailures).toBeGreaterThan(failures); // the gateway did refuse the certificate
    expect(selfSignedTls.requests).toBe(0);
    expect(unexpectedErrors()).toEqual([]);
    await expectStillServing();
  });

  it('a TLS handshake failure is a connect failure: a GET is retried on the healthy target (200), and counted against the TLS target', async () => {
    healthy.reset();
    const failures = selfSignedTls.handshakeFailures;
    const before = await scrape(gateway.adminUrl);
    const res = await get('/mixed/ok');
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ ok: true });
    expect(selfSignedTls.handshakeFailures).toBe(failures + 1); // tried first...
    expect(healthy.requests.map((r) => r.url)).toEqual(['/mixed/ok']); // ...then retried here
    const after = await scrape(gateway.adminUrl);
    expect(changed(before, after, 'sluice_upstream_errors_total')).toEqual({
      [seriesKey('sluice_upstream_errors_total', { upstream: 'mixed', code: 'bad_gateway' })]: 1,
    });
    // failures: 1, so that one failure opened the TLS target's breaker; the http target's stays closed
    expect(after.get(seriesKey('sluice_upstream_breaker_state', { upstream: 'mixed', target: selfSignedTls.url }))).toBe(1);
    expect(after.get(seriesKey('sluice_upstream_breaker_state', { upstream: 'mixed', target: healthy.url }))).toBe(0);
    expect((await get('/mixed/ok')).status).toBe(200);
  });
});

describe('other broken answers', () => {
  it.each([
    ['another protocol\'s greeting instead of HTTP', 'banner'],
    ['half a response head, then a TCP reset', 'reset-mid-headers'],
    ['half a response head, then a close', 'close-mid-headers'],
  ] as const)('502 bad_gateway for %s', async (_name, mode) => {
    faults.mode = mode;
    expectGatewayError(await get('/faults/x'), 502, 'bad_gateway');
    expect(unexpectedErrors()).toEqual([]);
    await expectStillServing();
  });

  it('502 bad_gateway for an http:// target that is really a TLS port (plain HTTP gets a TLS alert and a close)', async () => {
    expectGatewayError(await get('/plaintls/ok'), 502, 'bad_gateway');
    expect(unexpectedErrors()).toEqual([]);
  });

  it('a Content-Length longer than the body, then a close: the client connection is cut (its 200 head is already sent), never a complete-looking answer', async () => {
    faults.mode = 'short-body';
    await expect(get('/faults/x')).rejects.toThrow();
    await delay(50);
    expect(gateway.output.slice(logMark).some((line) => line.includes('upstream body failed mid-stream'))).toBe(true);
    expect(unexpectedErrors()).toEqual([]);
    await expectStillServing();
  });

  it('504 gateway_timeout for half a response head and then silence, within the route timeout', async () => {
    faults.mode = 'stall-mid-headers';
    const started = Date.now();
    expectGatewayError(await get('/stall/x'), 504, 'gateway_timeout');
    expect(Date.now() - started).toBeLessThan(1500);
    faults.mode = 'ok';
    expect((await get('/faults/x')).status).toBe(200);
  });
});

describe('the breaker settles after every kind of failure (failures: 1, cooldown 300 ms)', () => {
  async function breakerState(upstream: string, target: string): Promise<number | undefined> {
    return (await scrape(gateway.adminUrl)).get(seriesKey('sluice_upstream_breaker_state', { upstream, target }));
  }

  /** Requests until one is served (200); every answer on the way must be an envelope, never a 500. */
  async function servedWithin(route: string, ms: number): Promise<number[]> {
    const statuses: number[] = [];
    const deadline = Date.now() + ms;
    for (;;) {
      const res = await get(route);
      statuses.push(res.status);
      if (res.status === 200 || Date.now() > deadline) return statuses;
      expect(envelopeProblem(res.status, res.headers, res.text)).toBeUndefined();
      await delay(50);
    }
  }

  /**
   * Fails once (opens), lets the half-open trial fail too (opens again: the trial settled), then
   * heals the upstream: the target must be served again, not stuck half-open.
   */
  async function expectSettles(upstream: string, target: string, breakIt: () => void, trialFailure: () => void, heal: () => void) {
    const route = `/${upstream}/ok`;
    breakIt();
    expectGatewayError(await get(route), 502, 'bad_gateway');
    expectGatewayError(await get(route), 503, 'service_unavailable'); // open: counted against the target
    expect(await breakerState(upstream, target)).toBe(1);

    await delay(COOLDOWN_MS + 100);
    trialFailure();
    expectGatewayError(await get(route), 502, 'bad_gateway'); // the half-open trial
    expectGatewayError(await get(route), 503, 'service_unavailable'); // its failure opened the breaker again

    await delay(COOLDOWN_MS + 100);
    heal();
    const statuses = await servedWithin(route, 3000);
    expect(statuses.at(-1)).toBe(200);
    expect(statuses).not.toContain(500);
    expect(await breakerState(upstream, target)).toBe(0);
    expect(unexpectedErrors()).toEqual([]);
  }

  it.each([
    ['header overflow', 'overflow', 'overflow'],
    ['reset mid-headers', 'reset', 'reset-mid-headers'],
    ['garbage', 'garbage', 'garbage'],
  ] as const)('%s', async (_name, kind, mode) => {
    const raw = breakerRaw[kind];
    const fail = () => void (raw.mode = mode);
    await expectSettles(`brk-${kind}`, raw.url, fail, fail, () => void (raw.mode = 'ok'));
  });

  it('TLS failure (self-signed certificate), healed by a certificate the gateway trusts', async () => {
    const fail = () => breakerTls.useCertificate(untrusted);
    await expectSettles('brk-tls', breakerTls.url, fail, fail, () => breakerTls.useCertificate(trusted));
    expect(breakerTls.requests).toBeGreaterThanOrEqual(1);
  });

  it('opened by a reset, its half-open trial hit by a header overflow (the trial that used to wedge it)', async () => {
    const raw = breakerRaw.mixed;
    await expectSettles(
      'brk-mixed',
      raw.url,
      () => void (raw.mode = 'reset-mid-headers'),
      () => void (raw.mode = 'overflow'),
      () => void (raw.mode = 'ok'),
    );
  });
});
