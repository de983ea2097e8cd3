import net from 'node:net';
import { Agent } from 'undici';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, parseRawResponse, send } from '../support/http';
import { startUpstream, type TestUpstream } from '../support/upstream';

// One key's misbehaving clients — absent readers, slow readers, slow writers — must not hold the
// upstream capacity other keys need; every request is answered within its route's timeout, even one
// waiting for a pool connection; and what a client causes (a slow or stalled body, a body too large
// or malformed, a hang-up) never counts against the upstream's breaker.

const BAD = 'sk_test_slow_clients_bad_00000';
const GOOD = 'sk_test_slow_clients_good_0000';
const OTHER = 'sk_test_slow_clients_other_000';
const SEND_TIMEOUT_MS = 2000;
const BODY_TIMEOUT_MS = 1000;

let shared: TestUpstream; // 8 connections: 4 per key
let big: TestUpstream; // only the absent readers use it
let tiny: TestUpstream; // 1 connection
let gateway: TestGateway;
let configFile: string;

beforeAll(async () => {
  [shared, big, tiny] = await Promise.all([startUpstream(), startUpstream(), startUpstream()]);
  configFile = writeConfig(
    baseConfig({
      listen: { host: '127.0.0.1', port: 0, send_timeout: `${SEND_TIMEOUT_MS}ms`, body_timeout: `${BODY_TIMEOUT_MS}ms` },
      tiers: { t: { limits: [], scopes: ['*'] } },
      upstreams: {
        shared: { targets: [shared.url], connections: 8, timeout_ms: 3000, breaker: { failures: 1, cooldown: '30s' } },
        big: { targets: [big.url], connections: 8, timeout_ms: 3000 },
        strict: { targets: [shared.url], timeout_ms: 500, breaker: { failures: 1, cooldown: '30s' } },
        tiny: { targets: [tiny.url], connections: 1, max_connections_per_key: 1, timeout_ms: 1000, breaker: { failures: 1, cooldown: '30s' } },
      },
      routes: [
        { name: 'big', match: { path_prefix: '/big' }, upstream: 'big' },
        { name: 'strict', match: { path_prefix: '/strict' }, upstream: 'strict' },
        { name: 'tiny-patient', match: { path_prefix: '/tiny/patient' }, upstream: 'tiny', timeout_ms: 5000 },
        { name: 'tiny', match: { path_prefix: '/tiny' }, upstream: 'tiny' },
        { name: 'quick', match: { path_prefix: '/quick' }, upstream: 'shared', timeout_ms: 1500, max_body_bytes: '1MB' },
        { name: 'shared', match: { path_prefix: '/' }, upstream: 'shared' },
      ],
      keys: [
        { name: 'bad', tier: 't', key: BAD },
        { name: 'good', tier: 't', key: GOOD },
        { name: 'other', tier: 't', key: OTHER },
      ],
    }),
  );
  gateway = await startGateway(configFile);
});

afterAll(async () => {
  await gateway?.stop();
  await Promise.all([shared, big, tiny].map((u) => u?.close()));
  if (configFile) removeConfig(configFile);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw connection that sent `head` (and maybe some body) and then does what the test says. */
function connect(head: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(gateway.port, '127.0.0.1', () => {
      socket.write(head);
      resolve(socket);
    });
    socket.on('error', () => undefined);
    socket.once('error', reject);
  });
}

const get = (path: string, key: string) => `GET ${path} HTTP/1.1\r\nhost: sluice.test\r\nx-api-key: ${key}\r\n\r\n`;
const post = (path: string, key: string, length: number) =>
  `POST ${path} HTTP/1.1\r\nhost: sluice.test\r\nx-api-key: ${key}\r\ncontent-type: application/octet-stream\r\ncontent-length: ${length}\r\n\r\n`;

/** Everything the server sends until it closes, or `timeoutMs`. */
function readAll(socket: net.Socket, timeoutMs: number): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    let text = '';
    const timer = setTimeout(() => resolve({ text, closed: false }), timeoutMs);
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    socket.resume();
  });
}

/** The good key's requests while the bad key misbehaves: every one must be a 200. */
async function goodTraffic(count: number): Promise<{ statuses: number[]; slowestMs: number }> {
  const agent = new Agent({ connections: 4 });
  const statuses: number[] = [];
  let slowestMs = 0;
  try {
    for (let i = 0; i < count; i++) {
      const started = Date.now();
      const res = await send(`${gateway.url}/ok?i=${i}`, { headers: { 'x-api-key': GOOD }, dispatcher: agent }).catch(() => ({ status: 0 }));
      slowestMs = Math.max(slowestMs, Date.now() - started);
      statuses.push(res.status);
    }
  } finally {
    await agent.close();
  }
  return { statuses, slowestMs };
}

describe('slow and absent readers', () => {
  it('a client that stops reading a 64 MB answer frees its upstream connection within send_timeout', async () => {
    const readers = await Promise.all(Array.from({ length: 4 }, () => connect(get('/big/huge?bytes=64000000', BAD))));
    for (const socket of readers) socket.pause(); // never read
    await sleep(500);
    const held = big.activeResponses();
    const stoppedAt = Date.now();
    let freedMs = -1;
    while (Date.now() - stoppedAt < SEND_TIMEOUT_MS + 4000) {
      if (big.activeResponses() === 0) {
        freedMs = Date.now() - stoppedAt;
        break;
      }
      await sleep(50);
    }
    console.log(`4 absent readers of 64 MB: ${held} upstream connections held, all freed ${freedMs} ms after they stopped reading (send_timeout ${SEND_TIMEOUT_MS} ms)`);
    for (const socket of readers) socket.destroy();
    expect(held).toBe(4);
    expect(freedMs).toBeGreaterThanOrEqual(0);
    expect(freedMs).toBeLessThan(SEND_TIMEOUT_MS + 1500);
  });

  it.each([
    ['never read', async (socket: net.Socket) => void socket.pause()],
    ['read 1 MB, then stop', async (socket: net.Socket) => {
      let read = 0;
      socket.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > 1024 * 1024) socket.pause();
      });
    }],
    ['trickle: 1 KB every 200 ms', async (socket: net.Socket) => {
      socket.pause();
      const timer = setInterval(() => socket.read(1024), 200);
      socket.once('close', () => clearInterval(timer));
    }],
  ])('twelve clients of one key that %s hold at most its share: other keys keep getting 200s', async (_shape, behave) => {
    const slow = await Promise.all(Array.from({ length: 12 }, () => connect(get('/huge?bytes=8000000', BAD))));
    await Promise.all(slow.map(behave));
    await sleep(300);
    const good = await goodTraffic(20);
    console.log(`12 slow readers on the good key's upstream: good key got ${JSON.stringify(good.statuses.filter((s) => s !== 200))} non-200s of 20, slowest ${good.slowestMs} ms`);
    for (const socket of slow) socket.destroy();
    expect(good.statuses).toEqual(Array(20).fill(200));
  });

  it("past its share, a key's request waits for one of its own connections: 503 when none frees within the route timeout", async () => {
    const slow = await Promise.all(Array.from({ length: 4 }, () => connect(get('/huge?bytes=64000000', BAD))));
    slow.forEach((s) => s.pause());
    await sleep(300);
    const started = Date.now();
    const refused = await send(`${gateway.url}/quick/ok`, { headers: { 'x-api-key': BAD } }); // a 1.5 s route
    const tookMs = Date.now() - started;
    const other = await send(`${gateway.url}/quick/ok`, { headers: { 'x-api-key': GOOD } });
    for (const socket of slow) socket.destroy();
    console.log(`a fifth request of a key holding its 4 connections: ${refused.status} after ${tookMs} ms; another key meanwhile: ${other.status}`);
    expectEnvelope(refused, 503, 'service_unavailable');
    expect(refused.headers['retry-after']).toBe('1');
    expect(tookMs).toBeGreaterThanOrEqual(1400);
    expect(other.status).toBe(200);
  });

  it('a burst of one key beyond its share is served in turn, not refused', async () => {
    const agent = new Agent({ connections: 40 });
    try {
      const statuses = await Promise.all(
        Array.from({ length: 40 }, () => send(`${gateway.url}/slow?ms=100`, { headers: { 'x-api-key': GOOD }, dispatcher: agent }).then((r) => r.status)),
      );
      expect(statuses).toEqual(Array(40).fill(200));
    } finally {
      await agent.close();
    }
  });
});

describe('slow writers', () => {
  it('ten clients trickling small bodies hold no upstream connection: other keys keep getting 200s', async () => {
    const writers = await Promise.all(Array.from({ length: 10 }, () => connect(post('/echo', BAD, 4096))));
    const timers = writers.map((socket) => setInterval(() => socket.write(Buffer.alloc(100, 'x')), 200));
    try {
      await sleep(300);
      const heldWhileWriting = shared.openSockets();
      const good = await goodTraffic(20);
      console.log(`10 slow writers: ${heldWhileWriting} upstream connections open while they wrote; good key ${JSON.stringify(good.statuses.filter((s) => s !== 200))} non-200s of 20, slowest ${good.slowestMs} ms`);
      expect(good.statuses).toEqual(Array(20).fill(200));
      // Bodies under listen.request_buffer_bytes are read whole first: nothing was sent upstream yet.
      expect(shared.requests.filter((r) => r.method === 'POST')).toHaveLength(0);
    } finally {
      timers.forEach(clearInterval);
      writers.forEach((s) => s.destroy());
    }
  });

  it('a body that stops arriving gets 408 request_timeout after body_timeout, with Connection: close', async () => {
    const socket = await connect(post('/echo', OTHER, 4096) + 'x'.repeat(1000));
    const started = Date.now();
    const { text, closed } = await readAll(socket, 5000);
    const res = parseRawResponse(text);
    console.log(`body stalled after 1000 of 4096 bytes: ${res.status} after ${Date.now() - started} ms (body_timeout ${BODY_TIMEOUT_MS} ms)`);
    expectEnvelope({ status: res.status, headers: res.headers, body: res.body }, 408, 'request_timeout');
    expect(res.headers.connection).toBe('close');
    expect(closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(BODY_TIMEOUT_MS + 1500);
  });

  it.each([
    ['a small (buffered) body', 4096],
    ['a large (streamed) body', 512 * 1024],
  ])('%s trickling past the route timeout gets 408, not 504, and the breaker stays closed', async (_what, length) => {
    const socket = await connect(post('/quick/ok', OTHER, length)); // the upstream answers once it has the body
    const timer = setInterval(() => socket.write(Buffer.alloc(100, 'x')), 100); // never a gap of body_timeout
    try {
      const started = Date.now();
      const { text } = await readAll(socket, 5000);
      const res = parseRawResponse(text);
      console.log(`${_what} at 1 KB/s on a 1.5 s route: ${res.status} after ${Date.now() - started} ms`);
      expectEnvelope({ status: res.status, headers: res.headers, body: res.body }, 408, 'request_timeout');
      expect(res.headers.connection).toBe('close');
    } finally {
      clearInterval(timer);
      socket.destroy();
    }
    // breaker.failures is 1 on this upstream: one failure counted would eject it for 30 s.
    expect((await send(`${gateway.url}/quick/ok`, { headers: { 'x-api-key': OTHER } })).status).toBe(200);
  });

  it('a body still trickling when the route timeout passes is cut even if the upstream began its answer', async () => {
    const socket = await connect(post('/quick/echo', OTHER, 512 * 1024)); // echo answers at once
    const timer = setInterval(() => socket.write(Buffer.alloc(100, 'x')), 100);
    try {
      const started = Date.now();
      const { text, closed } = await readAll(socket, 5000);
      console.log(`streamed body at 1 KB/s, answer begun at once, 1.5 s route: connection cut after ${Date.now() - started} ms`);
      expect(text.startsWith('HTTP/1.1 200')).toBe(true);
      expect(closed).toBe(true);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      clearInterval(timer);
      socket.destroy();
    }
  });

  it('a client that keeps sending a body refused with 413 can still read the answer', async () => {
    const socket = await connect(post('/quick/echo', OTHER, 8 * 1024 * 1024));
    let writing = true;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    void (async () => {
      for (let sent = 0; writing && sent < 8 * 1024 * 1024 && !socket.destroyed; sent += chunk.length) {
        if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve).once('close', resolve));
      }
    })();
    const { text } = await readAll(socket, 8000);
    writing = false;
    socket.destroy();
    const res = parseRawResponse(text);
    expectEnvelope({ status: res.status, headers: res.headers, body: res.body }, 413, 'payload_too_large');
  });
});

describe('client faults never eject a healthy upstream (breaker.failures: 1)', () => {
  it.each([
    ['a stalled body (408)', async () => {
      const socket = await connect(post('/echo', OTHER, 4096) + 'x'.repeat(10));
      await readAll(socket, 4000);
    }],
    ['a body over the route limit, streamed (413)', async () => {
      const socket = await connect(`POST /quick/echo HTTP/1.1\r\nhost: sluice.test\r\nx-api-key: ${OTHER}\r\ntransfer-encoding: chunked\r\n\r\n`);
      for (let i = 0; i < 20 && !socket.destroyed; i++) socket.write(`10000\r\n${'x'.repeat(0x10000)}\r\n`);
      await readAll(socket, 4000);
    }],
    ['a malformed chunked body (400)', async () => {
      const socket = await connect(`POST /echo HTTP/1.1\r\nhost: sluice.test\r\nx-api-key: ${OTHER}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n`);
      await readAll(socket, 4000);
    }],
    ['a client that hangs up mid-body', async () => {
      const socket = await connect(post('/echo', OTHER, 200_000) + 'x'.repeat(100_000));
      await sleep(100);
      socket.destroy();
    }],
    ['a client that hangs up while the upstream works', async () => {
      const socket = await connect(get('/slow?ms=800', OTHER));
      await sleep(200);
      socket.destroy();
    }],
  ])('%s, five times', async (_fault, fault) => {
    for (let i = 0; i < 5; i++) await fault();
    await sleep(100);
    const res = await send(`${gateway.url}/ok`, { headers: { 'x-api-key': GOOD } });
    expect(res.status).toBe(200);
  });
});

it("the upstream's own fault does count: one 504 ejects a target with breaker.failures 1", async () => {
  expectEnvelope(await send(`${gateway.url}/strict/slow?ms=2000`, { headers: { 'x-api-key': OTHER } }), 504, 'gateway_timeout');
  expectEnvelope(await send(`${gateway.url}/strict/ok`, { headers: { 'x-api-key': OTHER } }), 503, 'service_unavailable');
});

describe('waiting for a pool connection', () => {
  it('a request that gets no connection within the route timeout is answered 503 in time, and the breaker stays closed', async () => {
    // The one connection is busy for 3 s (a route that allows 5 s); this route's timeout is 1 s.
    const holder = send(`${gateway.url}/tiny/patient/slow?ms=3000`, { headers: { 'x-api-key': BAD } });
    await sleep(200);
    const started = Date.now();
    const waited = await send(`${gateway.url}/tiny/ok`, { headers: { 'x-api-key': OTHER } });
    const tookMs = Date.now() - started;
    console.log(`queued for the only connection (busy 3 s), route timeout 1 s: ${waited.status} after ${tookMs} ms`);
    expectEnvelope(waited, 503, 'service_unavailable');
    expect(waited.headers['retry-after']).toBe('1');
    expect(tookMs).toBeLessThan(2000);
    expect((await holder).status).toBe(200);
    // The queued request never reached the upstream, and its 503 did not count against the target
    // (failures: 1 would have ejected it for 30 s).
    expect(tiny.requests.filter((r) => r.url.startsWith('/tiny/ok'))).toHaveLength(0);
    expect((await send(`${gateway.url}/tiny/ok`, { headers: { 'x-api-key': OTHER } })).status).toBe(200);
  });

  it('so is a WebSocket upgrade waiting for one', async () => {
    const holder = send(`${gateway.url}/tiny/patient/slow?ms=3000`, { headers: { 'x-api-key': BAD } });
    await sleep(200);
    const started = Date.now();
    const socket = await connect(
      `GET /tiny/ws HTTP/1.1\r\nhost: sluice.test\r\nx-api-key: ${OTHER}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n` +
        `sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    );
    const { text } = await readAll(socket, 5000);
    const tookMs = Date.now() - started;
    socket.destroy();
    const res = parseRawResponse(text);
    console.log(`upgrade queued for the only connection, route timeout 1 s: ${res.status} after ${tookMs} ms`);
    expectEnvelope({ status: res.status, headers: res.headers, body: res.body }, 503, 'service_unavailable');
    expect(tookMs).toBeLessThan(2000);
    expect((await holder).status).toBe(200);
  });
});
