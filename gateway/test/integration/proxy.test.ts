import { readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, parseRawResponse, rawExchange, send } from '../support/http';
import { closedPort } from '../support/ports';
import { startUpstream, type TestUpstream } from '../support/upstream';

// The gateway with the embedded store, a misbehaving upstream, and a dead port: every envelope row
// that needs no Redis, plus header handling and websockets, over real sockets.

const FREE_KEY = 'sk_test_free_0123456789abcdef';
const PRO_KEY = 'sk_test_pro_0123456789abcdef';
const NARROW_KEY = 'sk_test_narrow_0123456789abc';

let upstream: TestUpstream;
let gateway: TestGateway;
let configFile: string;

beforeAll(async () => {
  upstream = await startUpstream();
  const deadPort = await closedPort();
  configFile = writeConfig(
    baseConfig({
      tiers: {
        free: { limits: [{ requests: 1000, per: '1m' }], scopes: ['users:read', 'echo'] },
        pro: { limits: [], scopes: ['*'] },
      },
      upstreams: {
        app: { targets: [upstream.url], timeout_ms: 5000 },
        dead: { targets: [`http://127.0.0.1:${deadPort}`], timeout_ms: 1000 },
        slow: { targets: [upstream.url], timeout_ms: 300 },
      },
      routes: [
        { name: 'users', match: { path_prefix: '/v1/users', methods: ['GET', 'POST'] }, upstream: 'app', scopes: ['users:read'] },
        { name: 'admin', match: { path_prefix: '/v1/admin' }, upstream: 'app', scopes: ['admin'] },
        { name: 'echo', match: { path_prefix: '/v1/echo' }, upstream: 'app', scopes: ['echo'], max_body_bytes: '64KB' },
        { name: 'svc', match: { path_prefix: '/svc' }, upstream: 'app', strip_prefix: true },
        { name: 'dead', match: { path_prefix: '/dead' }, upstream: 'dead' },
        { name: 'slow', match: { path_prefix: '/slow' }, upstream: 'slow' },
        { name: 'slow-route', match: { path_prefix: '/v1/users/patient' }, upstream: 'slow', timeout_ms: 3000 },
      ],
      keys: [
        { name: 'free', tier: 'free', key: FREE_KEY },
        { name: 'pro', tier: 'pro', key: PRO_KEY },
        { name: 'narrow', tier: 'free', key: NARROW_KEY, scopes: ['echo'] },
      ],
    }),
  );
  gateway = await startGateway(configFile);
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  removeConfig(configFile);
});

beforeEach(() => upstream.reset());

const withKey = (key: string, extra: Record<string, string> = {}) => ({ 'x-api-key': key, ...extra });

describe('proxying', () => {
  it('forwards a valid request and passes the response through with a request id', async () => {
    const res = await send(`${gateway.url}/v1/users/ok?page=2`, { headers: withKey(FREE_KEY) });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ ok: true });
    expect(res.headers['x-request-id']).toMatch(/^req_/);
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0].url).toBe('/v1/users/ok?page=2');
  });

  it('never forwards the key; sends consumer id and tier instead, replacing any the client forged', async () => {
    const res = await send(`${gateway.url}/v1/users/headers`, {
      headers: withKey(FREE_KEY, { 'x-consumer-id': 'forged', 'x-consumer-tier': 'enterprise' }),
    });
    const seen = res.json.headers;
    expect(seen['x-api-key']).toBeUndefined();
    expect(seen['x-consumer-id']).toMatch(/^key_/);
    expect(seen['x-consumer-tier']).toBe('free');
    expect(JSON.stringify(res.json)).not.toContain(FREE_KEY);
  });

  it('sets X-Forwarded-* from the socket peer and ignores forged ones (and Forwarded, X-Real-IP) from an untrusted peer', async () => {
    const res = await send(`${gateway.url}/v1/users/headers`, {
      headers: withKey(FREE_KEY, {
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'evil.example',
        forwarded: 'for=6.6.6.6',
        'x-real-ip': '6.6.6.6',
      }),
    });
    const seen = res.json.headers;
    expect(seen.forwarded).toBeUndefined();
    expect(seen['x-real-ip']).toBeUndefined();
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe(`127.0.0.1:${gateway.port}`);
    expect(seen.host).toBe(`127.0.0.1:${upstream.port}`);
  });

  it('drops hop-by-hop headers, including those named in Connection, both ways', async () => {
    const res = await new Promise<{ status: number; body: any }>((resolve, reject) => {
      const req = http.request(`${gateway.url}/v1/users/headers`, {
        headers: { 'x-api-key': FREE_KEY, connection: 'keep-alive, x-hop', 'x-hop': 'drop me', 'keep-alive': 'timeout=5', te: 'trailers', 'x-end': 'keep me' },
        agent: false,
      });
      req.on('response', (r) => {
        let text = '';
        r.on('data', (c) => (text += c));
        r.on('end', () => resolve({ status: r.statusCode!, body: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(res.status).toBe(200);
    expect(res.body.headers['x-hop']).toBeUndefined();
    expect(res.body.headers.te).toBeUndefined();
    expect(res.body.headers['keep-alive']).toBeUndefined();
    expect(res.body.headers['x-end']).toBe('keep me');
  });

  it('keeps a sane incoming X-Request-Id, replaces an insane one, and forwards the same id upstream', async () => {
    const kept = await send(`${gateway.url}/v1/users/headers`, { headers: withKey(FREE_KEY, { 'x-request-id': 'trace-abc.123' }) });
    expect(kept.headers['x-request-id']).toBe('trace-abc.123');
    expect(kept.json.headers['x-request-id']).toBe('trace-abc.123');
    const replaced = await send(`${gateway.url}/v1/users/headers`, { headers: withKey(FREE_KEY, { 'x-request-id': 'bad id <script>' }) });
    expect(replaced.headers['x-request-id']).toMatch(/^req_[A-Za-z0-9_-]{16}$/);
    expect(replaced.json.headers['x-request-id']).toBe(replaced.headers['x-request-id']);
  });

  it('strips the prefix when the route asks for it', async () => {
    await send(`${gateway.url}/svc/inner/ok?x=1`, { headers: withKey(PRO_KEY) });
    expect(upstream.requests[0].url).toBe('/inner/ok?x=1');
  });

  it('forwards the normalised path, so ../ cannot reach another route through this one', async () => {
    // /v1/users/../admin is /v1/admin: the admin route's scope applies, and the free key lacks it.
    const raw = await rawExchange(gateway.port, `GET /v1/users/../admin/ok HTTP/1.1\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\nconnection: close\r\n\r\n`);
    expectEnvelope(parseRawResponse(raw), 403, 'forbidden');
    const dotted = await rawExchange(gateway.port, `GET /v1/echo/%2e%2e/users/./ok HTTP/1.1\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\nconnection: close\r\n\r\n`);
    expect(parseRawResponse(dotted).status).toBe(200);
    expect(upstream.requests.map((r) => r.url)).toEqual(['/v1/users/ok']);
  });

  it('passes upstream statuses, headers and bodies through untouched (not as envelopes)', async () => {
    const res = await send(`${gateway.url}/v1/users/status?code=404`, { headers: withKey(FREE_KEY) });
    expect(res.status).toBe(404);
    expect(res.json).toEqual({ status: 404 });
    expect(res.headers['x-upstream-status']).toBe('404');
    expect(res.headers['x-request-id']).toBeDefined();
  });

  it("relays the final answer after an upstream's interim 103 Early Hints (an interim answer is not the answer)", async () => {
    const res = await send(`${gateway.url}/v1/users/early-hints`, { headers: withKey(FREE_KEY) });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ ok: true });
    expect(res.headers['x-request-id']).toBeDefined();
  });

  it('streams chunked responses', async () => {
    const res = await send(`${gateway.url}/v1/users/chunked?chunks=5`, { headers: withKey(FREE_KEY) });
    expect(res.status).toBe(200);
    expect(res.text).toBe('chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n');
  });

  it('proxies a POST body and HEAD requests', async () => {
    const post = await send(`${gateway.url}/v1/users/headers`, { method: 'POST', headers: withKey(FREE_KEY, { 'content-type': 'application/json' }), body: '{"a":1}' });
    expect(post.json.method).toBe('POST');
    expect(post.json.bodyBytes).toBe(7);
    const head = await send(`${gateway.url}/v1/users/ok`, { method: 'HEAD', headers: withKey(FREE_KEY) });
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
  });
});

describe('envelopes', () => {
  it('401 missing_api_key without a key', async () => {
    expectEnvelope(await send(`${gateway.url}/v1/users/ok`), 401, 'missing_api_key');
    expect(upstream.requests).toHaveLength(0);
  });

  it('401 invalid_api_key for an unknown key, with the seed message', async () => {
    const error = expectEnvelope(await send(`${gateway.url}/v1/users/ok`, { headers: withKey('sk_live_nope_nope_nope_nope') }), 401, 'invalid_api_key');
    expect(error.message).toBe('The provided API key is invalid or has been revoked');
  });

  it('403 forbidden when the scopes do not cover the route, including key-level scopes', async () => {
    expectEnvelope(await send(`${gateway.url}/v1/admin/ok`, { headers: withKey(FREE_KEY) }), 403, 'forbidden');
    expectEnvelope(await send(`${gateway.url}/v1/users/ok`, { headers: withKey(NARROW_KEY) }), 403, 'forbidden');
    expect((await send(`${gateway.url}/v1/echo/ok`, { headers: withKey(NARROW_KEY) })).status).toBe(200);
    expect((await send(`${gateway.url}/v1/admin/ok`, { headers: withKey(PRO_KEY) })).status).toBe(200);
  });

  it('404 route_not_found for an unknown path or a method the route does not allow', async () => {
    expectEnvelope(await send(`${gateway.url}/nowhere`, { headers: withKey(PRO_KEY) }), 404, 'route_not_found');
    expectEnvelope(await send(`${gateway.url}/v1/users/ok`, { method: 'DELETE', headers: withKey(PRO_KEY) }), 404, 'route_not_found');
  });

  it.each(['/v1/users%2F..%2Fadmin', '/v1/users/%5c..', '/v1/users/a%00b', '/v1/users/%zz'])('400 invalid_request for the path %s', async (path) => {
    const raw = await rawExchange(gateway.port, `GET ${path} HTTP/1.1\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\nconnection: close\r\n\r\n`);
    expectEnvelope(parseRawResponse(raw), 400, 'invalid_request');
    expect(upstream.requests).toHaveLength(0);
  });

  it('400 invalid_request for a request the HTTP parser refuses, with an envelope', async () => {
    const raw = await rawExchange(gateway.port, 'GET /v1/users HTTP/1.1\r\nbad header line\r\n\r\n');
    expectEnvelope(parseRawResponse(raw), 400, 'invalid_request');
  });

  it('400 for conflicting Content-Length and Transfer-Encoding (no smuggling)', async () => {
    const raw = await rawExchange(
      gateway.port,
      `POST /v1/echo/echo HTTP/1.1\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/admin/ok HTTP/1.1\r\nhost: x\r\n\r\n`,
    );
    expectEnvelope(parseRawResponse(raw), 400, 'invalid_request');
    expect(upstream.requests).toHaveLength(0);
  });

  it.each([
    ['POST /v1/echo/echo HTTP/1.1', 'transfer-encoding: xchunked'],
    ['POST /v1/echo/echo HTTP/1.1', 'transfer-encoding: identity'],
    ['POST /v1/echo/echo HTTP/1.1', 'transfer-encoding: gzip, chunked'],
    ['POST /v1/echo/echo HTTP/1.1', 'transfer-encoding: identity\r\ntransfer-encoding: chunked'],
    ['POST /v1/echo/echo HTTP/1.0', 'transfer-encoding: chunked'],
  ])('400 for %s with %s (no smuggling): nothing pipelined behind it is forwarded either', async (requestLine, framing) => {
    const smuggled = `GET /v1/users/ok HTTP/1.1\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\n\r\n`;
    const raw = await rawExchange(gateway.port, `${requestLine}\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\n${framing}\r\n\r\n0\r\n\r\n${smuggled}`);
    const res = parseRawResponse(raw);
    expectEnvelope(res, 400, 'invalid_request');
    expect(res.headers.connection).toBe('close');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(upstream.requests).toHaveLength(0);
  });

  it.each([
    ['a size that is not hex', 'zz\r\nabcde\r\n0\r\n\r\n'],
    ['data longer than its size', '3\r\nabcde\r\n0\r\n\r\n'],
    ['a good chunk, then a bad size', '5\r\nabcde\r\nzz\r\n'],
    ['a bare LF after the size', '5\nabcde\r\n0\r\n\r\n'],
  ])('400 invalid_request and a close (not a silent close) for a chunked body with %s, already on its way upstream', async (_name, body) => {
    const started = Date.now();
    const raw = await rawExchange(gateway.port, `POST /v1/echo/echo HTTP/1.1\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\ntransfer-encoding: chunked\r\n\r\n${body}`);
    const res = parseRawResponse(raw);
    expect(expectEnvelope(res, 400, 'invalid_request').message).toMatch(/body/);
    expect(res.headers.connection).toBe('close');
    expect(Date.now() - started).toBeLessThan(2000); // answered and closed by the gateway, not by rawExchange's timeout
    // The upstream saw the request cut short, never a complete one.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(upstream.requests.every((r) => r.bodyBytes <= 5)).toBe(true);
  });

  it.each([
    ['no Host', ''],
    ['two Hosts', 'host: x\r\nhost: y\r\n'],
  ])('400 envelope (not node\'s bare 400) for an HTTP/1.1 request with %s', async (_name, hosts) => {
    const raw = await rawExchange(gateway.port, `GET /v1/users/ok HTTP/1.1\r\n${hosts}x-api-key: ${FREE_KEY}\r\n\r\n`);
    expectEnvelope(parseRawResponse(raw), 400, 'invalid_request');
    expect(upstream.requests).toHaveLength(0);
  });

  it('400 envelope for CONNECT rather than a silent close; nothing is tunneled', async () => {
    const tunneled = `GET /v1/users/ok HTTP/1.1\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\n\r\n`;
    const raw = await rawExchange(gateway.port, `CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\n\r\n${tunneled}`);
    expect(expectEnvelope(parseRawResponse(raw), 400, 'invalid_request').message).toMatch(/CONNECT/);
    expect(upstream.requests).toHaveLength(0);
  });

  it('ignores an expectation it does not know instead of a bare 417', async () => {
    const raw = await rawExchange(gateway.port, `GET /v1/users/ok HTTP/1.1\r\nhost: x\r\nx-api-key: ${FREE_KEY}\r\nexpect: something-else\r\nconnection: close\r\n\r\n`);
    expect(parseRawResponse(raw).status).toBe(200);
  });

  it('lets go of refused connections whose clients never close their side', async () => {
    const openFds = () => readdirSync(`/proc/${gateway.pid}/fd`).length;
    const before = openFds();
    const held = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<net.Socket>((resolve) => {
            // allowHalfOpen: the client keeps its side open after the gateway's 400 and FIN.
            const socket = net.connect({ port: gateway.port, host: '127.0.0.1', allowHalfOpen: true });
            socket.on('error', () => {});
            socket.resume(); // read (and drop) the 400, so that 'end' can come
            socket.once('end', () => resolve(socket));
            socket.once('close', () => resolve(socket));
            socket.write('GET /\x01 HTTP/1.1\r\n\r\n');
          }),
      ),
    );
    // The client gets 2 s to read the answer and close; then the gateway closes the socket itself.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(openFds()).toBeLessThanOrEqual(before + 2);
    for (const socket of held) socket.destroy();
  });

  it('413 payload_too_large for a declared body over the route limit, before the upstream is contacted', async () => {
    const body = Buffer.alloc(65 * 1024, 'a');
    const error = expectEnvelope(await send(`${gateway.url}/v1/echo/echo`, { method: 'POST', headers: withKey(FREE_KEY), body }), 413, 'payload_too_large');
    expect(error.details).toEqual({ max_body_bytes: 65536 });
    expect(upstream.requests).toHaveLength(0);
  });

  it('413 payload_too_large for a chunked body that goes over the limit while streaming', async () => {
    const res = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = http.request(`${gateway.url}/v1/echo/headers`, { method: 'POST', headers: { 'x-api-key': FREE_KEY }, agent: false });
      req.on('response', (r) => {
        let text = '';
        r.on('data', (c) => (text += c));
        r.on('end', () => resolve({ status: r.statusCode!, headers: r.headers, body: text }));
      });
      req.on('error', reject);
      let sent = 0;
      const pump = () => {
        while (sent < 200 * 1024) {
          sent += 16 * 1024;
          if (!req.write(Buffer.alloc(16 * 1024, 'b'))) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    expectEnvelope(res, 413, 'payload_too_large');
  });

  it('431 headers_too_large for oversized headers', async () => {
    const raw = await rawExchange(gateway.port, `GET /v1/users/ok HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expectEnvelope(parseRawResponse(raw), 431, 'headers_too_large');
  });

  it('502 bad_gateway when the upstream refuses the connection', async () => {
    expectEnvelope(await send(`${gateway.url}/dead/ok`, { headers: withKey(PRO_KEY) }), 502, 'bad_gateway');
  });

  it('502 bad_gateway when the upstream resets before answering', async () => {
    expectEnvelope(await send(`${gateway.url}/v1/users/reset-early`, { headers: withKey(FREE_KEY) }), 502, 'bad_gateway');
  });

  it('502 bad_gateway when the upstream answers something that is not HTTP', async () => {
    expectEnvelope(await send(`${gateway.url}/v1/users/garbage`, { headers: withKey(FREE_KEY) }), 502, 'bad_gateway');
  });

  it('cuts the connection when the upstream resets mid-body (headers already sent)', async () => {
    await expect(send(`${gateway.url}/v1/users/reset`, { headers: withKey(FREE_KEY) })).rejects.toThrow();
    // and keeps serving
    expect((await send(`${gateway.url}/v1/users/ok`, { headers: withKey(FREE_KEY) })).status).toBe(200);
  });

  it('a client that hangs up mid-request is no error: nothing logged as unexpected, upstream request abandoned', async () => {
    const controller = new AbortController();
    const pending = send(`${gateway.url}/v1/users/slow?ms=1500`, { headers: withKey(FREE_KEY), signal: controller.signal }).catch((e) => e);
    await new Promise((resolve) => setTimeout(resolve, 200));
    controller.abort();
    expect((await pending).name).toBe('AbortError');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(gateway.output.filter((line) => line.includes('unexpected error'))).toEqual([]);
    const logged = gateway.output.map((line) => JSON.parse(line)).find((entry) => entry.msg === 'request' && entry.status === 499);
    expect(logged).toBeDefined();
  });

  it('504 gateway_timeout when the upstream does not answer within timeout_ms; a route may allow longer', async () => {
    const started = Date.now();
    expectEnvelope(await send(`${gateway.url}/slow/slow?ms=2000`, { headers: withKey(PRO_KEY) }), 504, 'gateway_timeout');
    expect(Date.now() - started).toBeLessThan(1900);
    expect((await send(`${gateway.url}/v1/users/patient/slow?ms=600`, { headers: withKey(PRO_KEY) })).status).toBe(200);
  });
});

describe('websockets', () => {
  function openSocket(key?: string): Promise<{ ws: WebSocket; first: any }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/v1/echo/ws`, { headers: key ? { 'x-api-key': key } : {} });
      ws.once('message', (data) => resolve({ ws, first: JSON.parse(data.toString()) }));
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode, headers: res.headers, body: text })));
      });
      ws.once('error', reject);
    });
  }

  it('authenticates the upgrade, then relays messages both ways', async () => {
    const { ws, first } = await openSocket(FREE_KEY);
    expect(first.hello).toBe(true);
    expect(first.headers['x-api-key']).toBeUndefined();
    expect(first.headers['x-consumer-tier']).toBe('free');
    const echoed = new Promise((resolve) => ws.once('message', (data) => resolve(data.toString())));
    ws.send('ping through sluice');
    expect(await echoed).toBe('ping through sluice');
    ws.close();
  });

  it('refuses an h2c (non-WebSocket) upgrade with 400: its tunnel would skip every per-request check', async () => {
    upstream.reset();
    const raw = await rawExchange(
      gateway.port,
      'GET /v1/echo/ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n' +
        `HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nx-api-key: ${FREE_KEY}\r\n\r\n`,
    );
    const res = parseRawResponse(raw);
    expectEnvelope({ status: res.status, headers: res.headers, body: res.body }, 400, 'invalid_request');
    expect(upstream.requests).toEqual([]);
  });

  it('refuses an upgrade without a key with the 401 envelope', async () => {
    const err: any = await openSocket().catch((e) => e);
    expect(err.status).toBe(401);
    expectEnvelope({ status: err.status, headers: err.headers, body: err.body }, 401, 'missing_api_key');
  });
});
