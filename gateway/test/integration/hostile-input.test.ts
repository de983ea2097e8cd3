import net from 'node:net';
import WebSocket from 'ws';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, parseRawResponse, rawExchange } from '../support/http';
import { startUpstream, type TestUpstream } from '../support/upstream';

// Hostile input at the public port, sent over raw sockets as an attacker would (issue 15): path
// parameters, underscore header names, header counts past node's cap, bad Host values, bodies on
// bodiless answers, and upgrades that are not WebSocket handshakes. Real gateway processes, real upstreams.

const USER_KEY = 'sk_test_hostile_users_0123456789';
const FULL_KEY = 'sk_test_hostile_full_01234567890';

let upstream: TestUpstream;
let gateway: TestGateway;
let configFile: string;

beforeAll(async () => {
  upstream = await startUpstream();
  configFile = writeConfig(
    baseConfig({
      tiers: {
        // The user key reaches /v1/users and the catch-all, never /v1/admin or /admin.
        users: { limits: [], scopes: ['users', 'public'] },
        full: { limits: [], scopes: ['*'] },
      },
      upstreams: { app: { targets: [upstream.url] } },
      routes: [
        { name: 'users', match: { path_prefix: '/v1/users' }, upstream: 'app', scopes: ['users'] },
        { name: 'v1-admin', match: { path_prefix: '/v1/admin' }, upstream: 'app', scopes: ['admin'] },
        { name: 'all', match: { path_prefix: '/' }, upstream: 'app', scopes: ['public'] },
        { name: 'admin', match: { path_prefix: '/admin' }, upstream: 'app', scopes: ['admin'] },
        { name: 'svc', match: { path_prefix: '/svc/api' }, upstream: 'app', scopes: ['public'], strip_prefix: true },
      ],
      keys: [
        { name: 'users', tier: 'users', key: USER_KEY },
        { name: 'full', tier: 'full', key: FULL_KEY },
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

/** One request on its own connection (closed after the answer), as raw lines; the parsed answer. */
async function exchange(port: number, head: string[], body = '') {
  const raw = await rawExchange(port, head.join('\r\n') + '\r\n\r\n' + body);
  return parseRawResponse(raw);
}

function get(target: string, extra: string[] = [], key = USER_KEY): string[] {
  return [`GET ${target} HTTP/1.1`, 'Host: gw.test', `x-api-key: ${key}`, 'Connection: close', ...extra];
}

/** What the upstream received, read as a servlet container would: `;parameters` gone, decoded. */
function servletView(url: string): string {
  const path = url.split('?')[0];
  return path
    .split('/')
    .map((segment) => decodeURIComponent(segment.split(';')[0]))
    .join('/');
}

describe('path parameters', () => {
  // Every spelling climbs out of /v1/users (or into /admin) for a server that removes `;parameters`
  // or decodes again: each is refused before routing, whatever the key.
  const hiddenDotSegments = [
    '/v1/users/..;/admin/secret',
    '/v1/users/..;jsessionid=1/admin/secret',
    '/v1/users/..;a=b;c=d/admin/secret',
    '/v1/users/%2e%2e;/admin/secret',
    '/v1/users/%2E%2E;/admin/secret',
    '/v1/users/%2e%2E;x/admin/secret',
    '/v1/users/.%2E;x/admin/secret',
    '/v1/users/%2e.;/admin/secret',
    '/v1/users/.;/../admin/secret',
    '/v1/users/%2e;x/../../v1/admin/secret',
    '/v1/users/x/..;/..;/admin/secret',
    '/v1/users;v=1/..;/admin/secret',
    '/v1;a/users;b/..;c/admin;d/secret',
    '/v1/users/%252e%252e;/admin/secret',
    '/v1/users/%252E%252e;x/admin/secret',
    '/v1/users/%25252e%25252e;/admin/secret',
    '/v1/users/%252e%252e/admin/secret',
    '/v1/users/..%253b/admin/secret',
    '/v1/users/%2e%2e%253bx/admin/secret',
    '/v1/users/%252e%252e%252fadmin/secret',
    '/v1/users/;x/../admin/secret',
    '/v1/users/;/../admin/secret',
    '/;jsessionid=1/admin/secret',
    '/v1/users/..;',
    '/v1/users/..;?q=1',
  ];
  it.each(hiddenDotSegments)('refuses %s with 400 invalid_request, before the key is checked', async (target) => {
    for (const head of [get(target), get(target, [], FULL_KEY), get(target).filter((line) => !line.startsWith('x-api-key'))]) {
      const res = await exchange(gateway.port, head);
      expectEnvelope(res, 400, 'invalid_request');
    }
    expect(upstream.requests).toEqual([]);
  });

  // An encoded `;` is refused like an encoded `/`: upstreams disagree on whether it starts parameters.
  it.each(['/admin%3bx/secret', '/admin%3Bx/secret', '/v1/users/..%3b/admin/secret', '/v1/users/..%3B/admin', '/v1/users%3b/42', '/v1/users/42%3Bv=1'])(
    'refuses the encoded ";" in %s with 400 invalid_request',
    async (target) => {
      expectEnvelope(await exchange(gateway.port, get(target)), 400, 'invalid_request');
      expect(upstream.requests).toEqual([]);
    },
  );

  // Parameters on any segment do not dodge the narrower route: matched without them, the key lacks its scope.
  it.each([
    '/admin;x/secret',
    '/admin;jsessionid=1',
    '/admin;x',
    '/%61dmin;x/secret',
    '/admin;x/../admin;y/secret',
    '/v1/admin;x/secret',
    '/v1;x/admin/secret',
    '/v1;x/admin;y/secret;z',
    '/v1/users/../admin;x/secret',
    '/v1/users;x/../admin/secret',
    '/v1/users/a;b/../../admin/secret',
    '/public/../admin;x/secret',
  ])('%s is matched as its narrower route: 403 for a key without its scope', async (target) => {
    const res = await exchange(gateway.port, get(target));
    expectEnvelope(res, 403, 'forbidden');
    expect(upstream.requests).toEqual([]);
  });

  it.each([
    ['/v1/users;x/42', '/v1/users;x/42'],
    ['/v1/users/42;v=1', '/v1/users/42;v=1'],
    ['/v1/users;a=1;b=2/42;c', '/v1/users;a=1;b=2/42;c'],
    ['/v1/users/a/../42;x?q=1', '/v1/users/42;x?q=1'],
    ['/v1/users/a;x/../42', '/v1/users/42'],
    ['/v1/users/%2e%2e/users/7;y', '/v1/users/7;y'],
    ['/v1/users/%41;b=%41', '/v1/users/A;b=A'],
    ['/svc;x/api;y/items;z', '/items;z'],
    ['/svc/api;y', '/'],
    ['/public;v=2/page', '/public;v=2/page'],
  ])('%s is routed by its names and reaches the upstream as %s (parameters kept)', async (target, expected) => {
    const res = await exchange(gateway.port, get(target));
    expect(res.status).toBe(200);
    expect(upstream.requests.map((r) => r.url)).toEqual([expected]);
  });

  it('the users key never reaches /v1/admin or /admin, however the path is spelt', async () => {
    const spellings = [
      ...hiddenDotSegments,
      '/v1/users/%2e%2e/admin/secret',
      '/v1/users/../admin/secret',
      '/v1/users/./../admin;x/secret',
      '/v1/users//..//admin/secret',
      '/v1/users/%2e%2e;%2e%2e/admin',
      '/v1/users/..;%2f../admin',
      '/v1/users/..;/%2e%2e;/admin',
      '/v1/users/..\\admin',
      '/v1/users/%5c..%5cadmin',
      '/ADMIN/../admin;x',
    ];
    for (const target of spellings) await exchange(gateway.port, get(target));
    const escaped = upstream.requests.map((r) => servletView(r.url)).filter((path) => /^\/(v1\/)?admin(\/|$)/.test(path));
    expect(escaped).toEqual([]);
  });
});

describe('header names with "_"', () => {
  const identitySpellings = [
    'X_Consumer_Id: key_victim',
    'x_consumer_id: key_victim',
    'X-Consumer_Id: key_victim',
    'X_CONSUMER_ID: key_victim',
    'X_Consumer_Tier: pro',
    'x-consumer_tier: pro',
    'X_Forwarded_For: 10.9.9.9',
    'x_forwarded-for: 10.9.9.9',
    'X_Forwarded_Host: evil.example',
    'X_Forwarded_Proto: https',
    'X_Forwarded_Port: 443',
    'X_Real_IP: 10.9.9.9',
    'x_real_ip: 10.9.9.9',
    'x_api_key: sk_live_stolen',
    'X_Request_Id: forged',
    'Content_Length: 0',
    'Transfer_Encoding: chunked',
    'Proxy_Authorization: Basic eDp5',
  ];

  function underscoreNames(headers: Record<string, unknown>): string[] {
    return Object.keys(headers).filter((name) => name.includes('_'));
  }

  it('drops every one by default (nginx): identity spellings and any other, the dashed headers stay', async () => {
    const res = await exchange(gateway.port, get('/v1/users/headers', [...identitySpellings, 'x_custom_flag: 1', 'X-Custom-Flag: kept']));
    expect(res.status).toBe(200);
    const seen = upstream.requests[0].headers;
    expect(underscoreNames(seen)).toEqual([]);
    expect(seen['x-consumer-id']).toMatch(/^key_/);
    expect(seen['x-consumer-id']).not.toBe('key_victim');
    expect(seen['x-consumer-tier']).toBe('users');
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-host']).toBe('gw.test');
    expect(seen['x-custom-flag']).toBe('kept');
  });

  it('with underscores_in_headers: allow, other names pass, and no spelling of a header the gateway sets or trusts does', async () => {
    const allowUpstream = await startUpstream();
    const file = writeConfig(
      baseConfig({
        listen: { host: '127.0.0.1', port: 0, underscores_in_headers: 'allow' },
        tiers: { t: { limits: [], scopes: ['*'] } },
        upstreams: { app: { targets: [allowUpstream.url] } },
        routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
        keys: [{ name: 'k', tier: 't', key: FULL_KEY }],
      }),
    );
    const allowing = await startGateway(file);
    try {
      const res = await exchange(allowing.port, get('/headers', [...identitySpellings, 'x_custom_flag: 1', 'Legacy_Token: abc'], FULL_KEY));
      expect(res.status).toBe(200);
      const seen = allowUpstream.requests[0].headers;
      expect(underscoreNames(seen).sort()).toEqual(['legacy_token', 'x_custom_flag']);
      expect(seen['x-consumer-tier']).toBe('t');
      expect(seen['x-request-id']).not.toBe('forged');
      // Also on a WebSocket upgrade, which forwards the same headers.
      const hello = await new Promise<any>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${allowing.port}/ws`, {
          headers: { 'x-api-key': FULL_KEY, X_Consumer_Id: 'key_victim', X_Forwarded_For: '10.9.9.9', x_custom_flag: '1' },
        });
        ws.once('message', (data) => {
          resolve(JSON.parse(data.toString()));
          ws.close();
        });
        ws.once('error', reject);
      });
      expect(underscoreNames(hello.headers)).toEqual(['x_custom_flag']);
    } finally {
      await allowing.stop();
      await allowUpstream.close();
      removeConfig(file);
    }
  });
});

describe('Host', () => {
  it.each([
    'user:pass@evil.example',
    'user@evil.example',
    'evil.example/x?y',
    'evil.example/',
    'evil.example?x',
    'evil.example#x',
    'evil example',
    '<script>alert(1)</script>',
    'evil.example"',
    'evil.example\\x',
    'evil.example:',
    'evil.example:80:80',
    'evil.example:8o',
    'evil.example: 80',
    'evil.example:-1',
    'evil.example:99999',
    'evil.example:0x50',
    ':80',
    '%65vil.example',
    'evil%2eexample',
    '[::1',
    '::1',
    '[::1]x',
    '[::1]:',
    '[zz::1]',
    '[::1%25eth0]',
    '[127.0.0.1]',
    '[]',
    'évil.example',
  ])('refuses Host: %s with 400 invalid_request, before the key and the route', async (host) => {
    for (const head of [
      [`GET /v1/users/ok HTTP/1.1`, `Host: ${host}`, `x-api-key: ${USER_KEY}`],
      [`GET /v1/users/ok HTTP/1.1`, `Host: ${host}`],
      [`GET /v1/admin/ok HTTP/1.1`, `Host: ${host}`, `x-api-key: sk_wrong`],
      [`GET /v1/users/ok HTTP/1.0`, `Host: ${host}`, `x-api-key: ${USER_KEY}`],
    ]) {
      expectEnvelope(await exchange(gateway.port, head), 400, 'invalid_request');
    }
    expect(upstream.requests).toEqual([]);
  });

  it('refuses an empty Host, and still refuses a missing one on HTTP/1.1 with the envelope', async () => {
    expectEnvelope(await exchange(gateway.port, ['GET /v1/users/ok HTTP/1.1', 'Host:', `x-api-key: ${USER_KEY}`]), 400, 'invalid_request');
    expectEnvelope(await exchange(gateway.port, ['GET /v1/users/ok HTTP/1.1', `x-api-key: ${USER_KEY}`]), 400, 'invalid_request');
    expect(upstream.requests).toEqual([]);
  });

  it.each(['example.com:8080', 'example.com', 'EXAMPLE.com.', '[::1]:80', '[::1]', '[2001:db8::7]:443', '127.0.0.1', '127.0.0.1:65535', 'localhost', 'my_host.internal', 'xn--bcher-kva.example', "a-b.c~d!$&'()*+,;="])(
    'accepts Host: %s and relays it as X-Forwarded-Host',
    async (host) => {
      const res = await exchange(gateway.port, ['GET /v1/users/headers HTTP/1.1', `Host: ${host}`, `x-api-key: ${USER_KEY}`, 'Connection: close']);
      expect(res.status).toBe(200);
      expect(upstream.requests[0].headers['x-forwarded-host']).toBe(host);
    },
  );
});

describe('header count', () => {
  /** `count` header lines in all, Host and the key included. */
  function linesOf(count: number, filler: (i: number) => string, last: string[] = []): string[] {
    const fixed = ['Host: gw.test', `x-api-key: ${USER_KEY}`, 'Connection: close', ...last];
    return [...Array.from({ length: count - fixed.length }, (_, i) => filler(i)), ...fixed];
  }

  it('accepts exactly listen.max_header_count (100) lines, duplicates included', async () => {
    for (const filler of [(i: number) => `x-f${i}: ${i}`, () => 'x-dup: 1']) {
      const res = await exchange(gateway.port, ['GET /v1/users/ok HTTP/1.1', ...linesOf(100, filler)]);
      expect(res.status).toBe(200);
    }
    expect(upstream.requests).toHaveLength(2);
  });

  it.each([
    ['101 distinct short lines', 101, (i: number) => `x-f${i}: ${i}`],
    ['101 copies of one header', 101, () => 'x-dup: 1'],
    ['150 one-letter lines', 150, () => 'a:'],
    ['2,000 lines, node\'s own cap', 2000, () => 'a:1'],
    ['3,000 lines, past node\'s cap', 3000, () => 'a:1'],
  ])('refuses %s with 431 headers_too_large, connection closed', async (_label, count, filler) => {
    const res = await exchange(gateway.port, ['GET /v1/users/ok HTTP/1.1', ...linesOf(count, filler)]);
    expectEnvelope(res, 431, 'headers_too_large');
    expect(res.headers.connection).toBe('close');
    expect(upstream.requests).toEqual([]);
  });

  // Each smuggles a line past node's 2,000-line cap, where node would have dropped it unseen. (A
  // Content-Length with Transfer-Encoding node's parser refuses itself: 400.)
  it.each([
    ['Transfer-Encoding: chunked in HTTP/1.0', 'POST /v1/users/echo HTTP/1.0', ['Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n'],
    ['a second Host', 'GET /v1/users/ok HTTP/1.1', ['Host: evil.example'], ''],
    ['a second Host that is not a host', 'GET /v1/users/ok HTTP/1.1', ['Host: evil example'], ''],
    ['a Content-Length with its body', 'POST /v1/users/echo HTTP/1.1', ['Content-Length: 5'], 'hello'],
    ['a Content-Length with Transfer-Encoding', 'POST /v1/users/echo HTTP/1.1', ['Content-Length: 5', 'Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n'],
    ['an X-Consumer-Id', 'GET /v1/users/headers HTTP/1.1', ['X-Consumer-Id: key_victim'], ''],
    ['an Upgrade', 'POST /v1/users/ok HTTP/1.1', ['Connection: Upgrade', 'Upgrade: websocket', 'Content-Length: 0'], ''],
  ])('after 2,000 filler lines, %s is never ignored: refused, nothing relayed', async (label, requestLine, tail, body) => {
    const head = [requestLine, 'Host: gw.test', `x-api-key: ${USER_KEY}`, ...Array.from({ length: 2100 }, () => 'a:1'), ...tail];
    const res = await exchange(gateway.port, head, body);
    // Node 20's parser refuses Content-Length with Transfer-Encoding itself (400) before the request
    // is seen; Node 22's hands it over and the count refuses it (431). Either way: refused, in an envelope.
    if (label.includes('with Transfer-Encoding') && res.status === 400) expectEnvelope(res, 400, 'invalid_request');
    else expectEnvelope(res, 431, 'headers_too_large');
    expect(upstream.requests).toEqual([]);
  });

  it('refuses a WebSocket upgrade past the count too', async () => {
    const head = ['GET /v1/users/ws HTTP/1.1', ...linesOf(120, (i) => `x-f${i}: 1`, ['Upgrade: websocket', 'sec-websocket-version: 13', 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ=='])];
    const res = await exchange(gateway.port, head.map((line) => (line === 'Connection: close' ? 'Connection: Upgrade' : line)));
    expectEnvelope(res, 431, 'headers_too_large');
    expect(upstream.requests).toEqual([]);
  });

  it('trailers are read and never forwarded: an identity header in them does not reach the upstream', async () => {
    const trailers = ['X-Consumer-Id: key_victim', ...Array.from({ length: 150 }, (_, i) => `x-t${i}: 1`)];
    const res = await exchange(
      gateway.port,
      ['POST /v1/users/headers HTTP/1.1', 'Host: gw.test', `x-api-key: ${USER_KEY}`, 'Transfer-Encoding: chunked', 'Connection: close'],
      `5\r\nhello\r\n0\r\n${trailers.join('\r\n')}\r\n\r\n`,
    );
    // Node 20 reads the 151 trailer lines and hands none over; Node 22's parser refuses the body past
    // maxHeadersCount (400, the upstream request abandoned). Either way none of them reaches the upstream.
    if (res.status === 200) expect(upstream.requests[0].bodyBytes).toBe(5);
    else expectEnvelope(res, 400, 'invalid_request');
    for (const seen of upstream.requests) {
      expect(seen.headers['x-consumer-id']).not.toBe('key_victim');
      expect(Object.keys(seen.headers).filter((name) => name.startsWith('x-t'))).toEqual([]);
    }
  });

  it('with a count above node\'s 2,000, a Content-Length after 2,500 lines is read, never dropped', async () => {
    const countUpstream = await startUpstream();
    const file = writeConfig(
      baseConfig({
        listen: { host: '127.0.0.1', port: 0, max_header_count: 3000, max_header_bytes: '64KB' },
        tiers: { t: { limits: [], scopes: ['*'] } },
        upstreams: { app: { targets: [countUpstream.url] } },
        routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
        keys: [{ name: 'k', tier: 't', key: FULL_KEY }],
      }),
    );
    const wide = await startGateway(file);
    try {
      const filler = Array.from({ length: 2500 }, () => 'a:1');
      const posted = await exchange(wide.port, ['POST /echo HTTP/1.1', 'Host: gw.test', `x-api-key: ${FULL_KEY}`, 'Connection: close', ...filler, 'Content-Length: 5'], 'hello');
      expect(posted.status).toBe(200);
      expect(posted.body).toContain('hello'); // relayed chunked
      const chunked = await exchange(wide.port, ['POST /echo HTTP/1.0', 'Host: gw.test', `x-api-key: ${FULL_KEY}`, ...filler, 'Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n');
      expectEnvelope(chunked, 400, 'invalid_request');
      const twoHosts = await exchange(wide.port, ['GET /ok HTTP/1.1', 'Host: gw.test', `x-api-key: ${FULL_KEY}`, ...filler, 'Host: evil.example']);
      expectEnvelope(twoHosts, 400, 'invalid_request');
      expect(countUpstream.requests.map((r) => [r.url, r.bodyBytes])).toEqual([['/echo', 5]]);
    } finally {
      await wide.stop();
      await countUpstream.close();
      removeConfig(file);
    }
  });
});

describe('upgrades', () => {
  const websocketHeaders = ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='];

  it.each([
    ['POST with Upgrade: websocket', 'POST', websocketHeaders, 'Content-Length: 5'],
    ['PUT with Upgrade: websocket', 'PUT', websocketHeaders, 'Content-Length: 5'],
    ['DELETE with Upgrade: websocket', 'DELETE', websocketHeaders, null],
    ['OPTIONS with Upgrade: websocket', 'OPTIONS', websocketHeaders, null],
    ['HEAD with Upgrade: websocket', 'HEAD', websocketHeaders, null],
    ['GET with Upgrade: h2c', 'GET', ['Upgrade: h2c', 'Connection: Upgrade, HTTP2-Settings', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'], null],
    ['GET with Upgrade: WebSocket, h2c', 'GET', ['Upgrade: websocket, h2c', 'Connection: Upgrade'], null],
    ['GET with Upgrade: TLS/1.0', 'GET', ['Upgrade: TLS/1.0', 'Connection: Upgrade'], null],
    ['POST with Upgrade: h2c', 'POST', ['Upgrade: h2c', 'Connection: Upgrade'], 'Content-Length: 5'],
    ['GET with Upgrade: websocket but no Connection: upgrade', 'GET', ['Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Connection: close'], null],
    ['POST with Upgrade: websocket but no Connection: upgrade', 'POST', ['Upgrade: websocket', 'Connection: close'], 'Content-Length: 5'],
  ])('%s: 400 invalid_request, never 101, never proxied, with or without a key', async (_label, method, headers, length) => {
    for (const key of [USER_KEY, null]) {
      const head = [`${method} /v1/users/ws HTTP/1.1`, 'Host: gw.test', ...(key ? [`x-api-key: ${key}`] : []), ...headers, ...(length ? [length] : [])];
      const raw = await rawExchange(gateway.port, head.join('\r\n') + '\r\n\r\n' + (length ? 'hello' : ''));
      expect(raw.startsWith('HTTP/1.1 400 ')).toBe(true);
      expect(raw).not.toContain('101 Switching');
      if (method !== 'HEAD') expectEnvelope(parseRawResponse(raw), 400, 'invalid_request');
    }
    expect(upstream.requests).toEqual([]);
  });

  it('a GET WebSocket handshake is still authenticated, then tunnelled', async () => {
    const hello = await new Promise<any>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/v1/users/ws`, { headers: { 'x-api-key': USER_KEY } });
      ws.once('message', (data) => {
        resolve(JSON.parse(data.toString()));
        ws.close();
      });
      ws.once('error', reject);
    });
    expect(hello.hello).toBe(true);
    expect(upstream.requests.map((r) => r.method)).toEqual(['GET']);
  });
});

// ---------------------------------------------------------------------------------------------
// Bodies on bodiless answers, from an upstream that is a plain TCP server saying exactly what it is told.

describe('bodiless answers from the upstream', () => {
  interface Seen {
    connection: number;
    method: string;
    path: string;
  }
  const seen: Seen[] = [];
  // What the raw upstream answers, by request path.
  const answers: Record<string, string> = {
    '/no-content-with-length': 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Mark: a\r\n\r\nhello',
    '/no-content-with-bytes': 'HTTP/1.1 204 No Content\r\nX-Mark: a\r\n\r\nhello',
    '/no-content-chunked': 'HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    '/not-modified-with-length': 'HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: "x"\r\n\r\nhello',
    '/not-modified-with-bytes': 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled',
    '/head-with-body': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello',
    '/no-content': 'HTTP/1.1 204 No Content\r\nX-Mark: a\r\n\r\n',
    '/ok': 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine',
  };
  let raw: net.Server;
  let rawPort: number;
  let bodiless: TestGateway;
  let file: string;

  beforeAll(async () => {
    let connections = 0;
    raw = net.createServer((socket) => {
      const connection = ++connections;
      let buffered = '';
      socket.on('error', () => undefined);
      socket.on('data', (chunk) => {
        buffered += chunk.toString('latin1');
        for (let end = buffered.indexOf('\r\n\r\n'); end !== -1; end = buffered.indexOf('\r\n\r\n')) {
          const [method, target] = buffered.slice(0, end).split(' ');
          const path = target.split('?')[0];
          buffered = buffered.slice(end + 4); // the gateway sends these bodiless
          seen.push({ connection, method, path });
          socket.write(answers[path] ?? answers['/ok']);
        }
      });
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    rawPort = (raw.address() as net.AddressInfo).port;
    file = writeConfig(
      baseConfig({
        tiers: { t: { limits: [], scopes: ['*'] } },
        upstreams: { raw: { targets: [`http://127.0.0.1:${rawPort}`], connections: 1 } },
        routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'raw', retries: 0 }],
        keys: [{ name: 'k', tier: 't', key: FULL_KEY }],
      }),
    );
    bodiless = await startGateway(file);
  });

  afterAll(async () => {
    await bodiless?.stop();
    await new Promise((resolve) => raw?.close(resolve));
    removeConfig(file);
  });

  /** A client keeping one connection: sends a request, reads exactly one answer (none for a bodiless one). */
  class Client {
    private readonly socket: net.Socket;
    private buffered = Buffer.alloc(0);
    private wake: () => void = () => undefined;
    closed = false;

    constructor(port: number) {
      this.socket = net.connect(port, '127.0.0.1');
      this.socket.on('data', (chunk) => {
        this.buffered = Buffer.concat([this.buffered, chunk]);
        this.wake();
      });
      this.socket.on('close', () => {
        this.closed = true;
        this.wake();
      });
      this.socket.on('error', () => undefined);
    }

    async request(method: string, path: string, requestId = 'bodiless'): Promise<{ status: number; headers: Record<string, string>; body: string }> {
      this.socket.write(`${method} ${path} HTTP/1.1\r\nHost: gw.test\r\nx-api-key: ${FULL_KEY}\r\nx-request-id: ${requestId}\r\n\r\n`);
      const end = await this.until(() => this.buffered.indexOf('\r\n\r\n'));
      const { status, headers } = parseRawResponse(this.buffered.subarray(0, end + 4).toString('latin1'));
      this.buffered = this.buffered.subarray(end + 4);
      const length = method === 'HEAD' || status === 204 || status === 304 ? 0 : Number(headers['content-length']);
      await this.until(() => (this.buffered.length >= length ? length : -1));
      const body = this.buffered.subarray(0, length).toString('latin1');
      this.buffered = this.buffered.subarray(length);
      return { status, headers, body };
    }

    /** Bytes that arrived after the last answer, within `ms`. */
    async stray(ms = 150): Promise<string> {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return this.buffered.toString('latin1');
    }

    close(): void {
      this.socket.destroy();
    }

    private async until(found: () => number): Promise<number> {
      const deadline = Date.now() + 5000;
      for (;;) {
        const at = found();
        if (at !== -1) return at;
        if (this.closed) throw new Error(`connection closed; had ${JSON.stringify(this.buffered.toString('latin1'))}`);
        if (Date.now() > deadline) throw new Error('no answer in 5 s');
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, 50);
        });
      }
    }
  }

  it.each([
    ['GET', '/no-content-with-length', 204],
    ['GET', '/no-content-with-bytes', 204],
    ['GET', '/no-content-chunked', 204],
    ['GET', '/not-modified-with-length', 304],
    ['GET', '/not-modified-with-bytes', 304],
    ['HEAD', '/head-with-body', 200],
  ])('%s %s: the client gets a clean %i, its connection goes on, the upstream\'s extra bytes die with its connection', async (method, path, status) => {
    seen.length = 0;
    const client = new Client(bodiless.port);
    try {
      const first = await client.request(method, path);
      expect(first.status).toBe(status);
      expect(first.headers['x-request-id']).toBeDefined();
      if (status !== 200) expect(first.headers['content-length']).toBeUndefined();
      else expect(first.headers['content-length']).toBe('5');
      expect(await client.stray()).toBe('');

      const second = await client.request('GET', '/ok');
      expect(second).toMatchObject({ status: 200, body: 'fine' });
      const third = await client.request('GET', '/no-content');
      expect(third.status).toBe(204);
      expect(await client.stray()).toBe('');
      expect(client.closed).toBe(false);
    } finally {
      client.close();
    }
    expect(seen.map((s) => s.path)).toEqual([path, '/ok', '/no-content']);
    // The request after the one with extra bytes went on a new upstream connection.
    expect(seen[1].connection).not.toBe(seen[0].connection);
  });

  it('a clean 204 keeps its upstream connection (no needless reconnects)', async () => {
    seen.length = 0;
    const client = new Client(bodiless.port);
    try {
      for (let i = 0; i < 3; i++) expect((await client.request('GET', '/no-content')).status).toBe(204);
    } finally {
      client.close();
    }
    expect(new Set(seen.map((s) => s.connection)).size).toBe(1);
  });

  it('the access log records the 204 the client got, and a warning names the upstream\'s extra bytes', async () => {
    const client = new Client(bodiless.port);
    try {
      expect((await client.request('GET', '/no-content-with-length', 'bodiless-logged')).status).toBe(204);
    } finally {
      client.close();
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    const lines = bodiless.output.filter((line) => line.includes('"request_id":"bodiless-logged"'));
    expect(lines.find((line) => line.includes('"msg":"request"'))).toContain('"status":204');
    expect(lines.find((line) => line.includes('bodiless answer'))).toBeDefined();
  });
});
