import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { Agent } from 'undici';
import { ADMIN_TOKEN } from '../support/admin';
import { baseConfig, removeConfig, runCli, startGateway, suiteStack, writeConfig } from '../support/gateway';
import { expectEnvelope, parseRawResponse, send, type SimpleResponse } from '../support/http';
import { waitFor } from '../support/wait';

// The admin listener as an attacker meets it, over real sockets from several loopback addresses
// (127.0.0.x: each is another client address to the gateway): a brute-force block on the admin
// token, tokens too short to be safe, bodies over 16 KB, what node's parser refuses, and text that
// is not valid Unicode.

const MAX_ATTEMPTS = 5;
const BLOCK_MS = 2000;
const HEADERS_TIMEOUT_MS = 1000;
const BODY_TIMEOUT_MS = 1000;
const TRUSTED_PROXY = '127.0.0.30';

const stack = suiteStack(({ redis, upstream }) =>
  baseConfig({
    listen: { host: '127.0.0.1', port: 0, headers_timeout: `${HEADERS_TIMEOUT_MS}ms`, body_timeout: `${BODY_TIMEOUT_MS}ms` },
    admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN, failed_tokens: { max_attempts: MAX_ATTEMPTS, per: '1m', block_for: `${BLOCK_MS}ms` } },
    trusted_proxies: [TRUSTED_PROXY],
    store: { redis: { url: redis.url }, timeout_ms: 1000 },
    tiers: { free: { limits: [{ requests: 100, per: '1m' }], scopes: ['users:read'] } },
    upstreams: { app: { targets: [upstream.url] } },
    routes: [{ name: 'users', match: { path_prefix: '/v1/users' }, upstream: 'app', scopes: ['users:read'] }],
  }),
);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- clients bound to one loopback address ------------------------------------------------------

const agents = new Map<string, Agent>();
afterAll(async () => {
  await Promise.all([...agents.values()].map((agent) => agent.close()));
});

/** An HTTP client whose connections come from `address`. */
function from(address: string) {
  let agent = agents.get(address);
  if (!agent) agents.set(address, (agent = new Agent({ localAddress: address, keepAliveTimeout: 1000 })));
  const dispatcher = agent;
  return (path: string, options: { method?: string; token?: string | null; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<SimpleResponse> => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token !== null) headers.authorization = `Bearer ${options.token ?? ADMIN_TOKEN}`;
    if (options.body !== undefined) headers['content-type'] ??= 'application/json';
    return send(`${stack.gateway.adminUrl}${path}`, { method: options.method, headers, body: options.body, dispatcher });
  };
}

interface RawClient {
  socket: net.Socket;
  /** Everything received so far (latin1). */
  received(): string;
  /** Whether the socket saw an error (ECONNRESET, EPIPE) and which. */
  error(): string | undefined;
  closed: Promise<void>;
}

/** A raw TCP connection to the admin port from `localAddress`. */
function rawClient(localAddress = '127.0.0.1'): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: stack.gateway.adminPort, localAddress });
    let received = '';
    let error: string | undefined;
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.once('connect', () => resolve({ socket, received: () => received, error: () => error, closed }));
    socket.once('error', reject);
  });
}

/** The first complete response on `client` (its headers and Content-Length body), or a timeout error. */
async function firstResponse(client: RawClient, timeoutMs = 5000) {
  await waitFor(
    () => {
      const raw = client.received();
      const end = raw.indexOf('\r\n\r\n');
      if (end === -1) return false;
      const length = /\r\ncontent-length: *(\d+)/i.exec(raw.slice(0, end));
      return length !== null && raw.length >= end + 4 + Number(length[1]);
    },
    timeoutMs,
    { what: 'a complete response' },
  );
  const raw = client.received();
  const end = raw.indexOf('\r\n\r\n');
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(raw.slice(0, end))![1]);
  return { ...parseRawResponse(raw.slice(0, end + 4 + length)), rest: raw.slice(end + 4 + length) };
}

/** Sends `payload` on a fresh connection and returns the first response. */
async function rawRequest(payload: string | Buffer, localAddress = '127.0.0.1', timeoutMs = 5000) {
  const client = await rawClient(localAddress);
  try {
    client.socket.write(payload);
    return await firstResponse(client, timeoutMs);
  } finally {
    client.socket.destroy();
  }
}

const head = (method: string, path: string, headers: Record<string, string | number>, token = ADMIN_TOKEN) =>
  `${method} ${path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer ${token}\r\n` +
  Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('') +
  '\r\n';

// ---- 1. failed admin tokens --------------------------------------------------------------------

describe('admin.failed_tokens: a brute-force block per client address on /v1/keys', () => {
  it(`answers ${MAX_ATTEMPTS} wrong tokens with 401, then 429 with Retry-After for every request to /v1/keys, the right token included, until block_for ends`, async () => {
    const attacker = from('127.0.0.1');
    const bystander = from('127.0.0.2');

    // Probes, metrics and /v1/keys answers that are not token failures never count.
    for (let i = 0; i < 3 * MAX_ATTEMPTS; i++) {
      for (const path of ['/healthz', '/readyz', '/metrics']) expect((await attacker(path, { token: 'wrong-token' })).status).toBe(200);
    }
    expect((await attacker('/v1/keys')).status).toBe(200);

    // Every way of being wrong counts: a wrong token, none, another scheme, an empty bearer.
    const wrongs: Record<string, string>[] = [
      { authorization: 'Bearer wrong-token' },
      {},
      { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` },
      { authorization: 'Bearer ' },
      { authorization: `Bearer ${ADMIN_TOKEN}x` },
    ];
    const statuses: number[] = [];
    for (let i = 0; i < MAX_ATTEMPTS + 5; i++) {
      const res = await attacker(i % 2 === 0 ? '/v1/keys' : '/v1/keys/key_00000000', { token: null, headers: wrongs[i % wrongs.length] });
      statuses.push(res.status);
      if (res.status === 429) {
        const error = expectEnvelope(res, 429, 'too_many_failed_attempts');
        const retryAfter = Number(res.headers['retry-after']);
        expect(retryAfter).toBeGreaterThanOrEqual(1);
        expect(retryAfter).toBeLessThanOrEqual(Math.ceil(BLOCK_MS / 1000));
        expect(error.details).toEqual({ retry_after: retryAfter });
        expect(error.message).toBe(`Too many failed authentication attempts from this address. Please wait ${retryAfter} seconds before retrying.`);
      } else {
        expectEnvelope(res, 401, 'invalid_admin_token');
      }
    }
    expect(statuses).toEqual([...Array(MAX_ATTEMPTS).fill(401), ...Array(5).fill(429)]);
    const blockedAt = Date.now();

    // The right token does not lift the block (a guesser must not learn that it guessed right),
    // on any method or path of the key API; the probes and metrics stay open.
    for (const [method, path, body] of [
      ['GET', '/v1/keys', undefined],
      ['POST', '/v1/keys', '{"name":"x","tier":"free"}'],
      ['GET', '/v1/keys/key_00000000/usage', undefined],
      ['DELETE', '/v1/keys/key_00000000', undefined],
    ] as const) {
      expectEnvelope(await attacker(path, { method, body }), 429, 'too_many_failed_attempts');
    }
    for (const path of ['/healthz', '/readyz', '/metrics']) expect((await attacker(path)).status).toBe(200);

    // Another address is not affected, and fails on its own count.
    expect((await bystander('/v1/keys')).status).toBe(200);
    expectEnvelope(await bystander('/v1/keys', { token: 'wrong-token' }), 401, 'invalid_admin_token');
    expect((await bystander('/v1/keys')).status).toBe(200);

    // The block ends after block_for; the right token works again, and a wrong one is a 401 again.
    await sleep(Math.max(0, blockedAt + BLOCK_MS + 100 - Date.now()));
    expect((await attacker('/v1/keys')).status).toBe(200);
    expectEnvelope(await attacker('/v1/keys', { token: 'wrong-token' }), 401, 'invalid_admin_token');
  });

  it('is exact under a burst: concurrent requests on many connections, and requests pipelined on one raw connection', async () => {
    const burst = from('127.0.0.3');
    const answers = await Promise.all(Array.from({ length: 200 }, () => burst('/v1/keys', { token: 'wrong-token' })));
    const count = (status: number) => answers.filter((res) => res.status === status).length;
    expect([count(401), count(429)]).toEqual([MAX_ATTEMPTS, 200 - MAX_ATTEMPTS]);
    for (const res of answers) expectEnvelope(res, res.status, res.status === 401 ? 'invalid_admin_token' : 'too_many_failed_attempts');

    // 3 × max_attempts requests in one write on one connection (the last one with the right token).
    const client = await rawClient('127.0.0.4');
    try {
      const requests = Array.from({ length: 3 * MAX_ATTEMPTS }, (_, i) => head('GET', '/v1/keys', {}, i === 3 * MAX_ATTEMPTS - 1 ? ADMIN_TOKEN : `wrong-${i}`));
      client.socket.end(requests.join(''));
      await client.closed;
      const statuses: number[] = [];
      let rest = client.received();
      while (rest.length > 0) {
        const res = await firstResponse({ ...client, received: () => rest });
        expectEnvelope(res, res.status, res.status === 401 ? 'invalid_admin_token' : 'too_many_failed_attempts');
        statuses.push(res.status);
        rest = res.rest;
      }
      expect(statuses).toEqual([...Array(MAX_ATTEMPTS).fill(401), ...Array(2 * MAX_ATTEMPTS).fill(429)]);
    } finally {
      client.socket.destroy();
    }
  });

  it('counts the client behind a trusted proxy (X-Forwarded-For), and ignores X-Forwarded-For from anyone else', async () => {
    const proxy = from(TRUSTED_PROXY);
    const viaProxy = (client: string, token?: string) => proxy('/v1/keys', { token, headers: { 'x-forwarded-for': `${client}, ${TRUSTED_PROXY}` } });
    for (let i = 0; i < MAX_ATTEMPTS; i++) expectEnvelope(await viaProxy('203.0.113.7', 'wrong-token'), 401, 'invalid_admin_token');
    expectEnvelope(await viaProxy('203.0.113.7'), 429, 'too_many_failed_attempts');
    // The proxy's other clients, and the proxy itself, are not blocked.
    expect((await viaProxy('203.0.113.8')).status).toBe(200);
    expect((await proxy('/v1/keys')).status).toBe(200);

    // An untrusted peer cannot escape its block by forging a new X-Forwarded-For each time.
    const forger = from('127.0.0.31');
    const statuses: number[] = [];
    for (let i = 0; i < MAX_ATTEMPTS + 3; i++) {
      statuses.push((await forger('/v1/keys', { token: 'wrong-token', headers: { 'x-forwarded-for': `198.51.100.${i}` } })).status);
    }
    expect(statuses).toEqual([...Array(MAX_ATTEMPTS).fill(401), 429, 429, 429]);
  });
});

// ---- 2. admin tokens of at least 32 characters ---------------------------------------------------

describe('admin.token must be at least 32 characters', () => {
  const SHORT = 'short-admin-token-31-characters'; // 31
  const LONG_ENOUGH = 'admin-token-of-32-characters-ok!'; // 32
  const MESSAGE = 'admin.token: must be at least 32 characters (generate one with: openssl rand -hex 32)';
  const configWith = (token: string) =>
    writeConfig(
      baseConfig({
        admin: { host: '127.0.0.1', port: 0, token },
        tiers: { free: { limits: [], scopes: ['*'] } },
        upstreams: { app: { targets: ['http://127.0.0.1:9'] } },
        routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      }),
    );

  it('sluice config check refuses one of 31 characters (written in the file, or from the environment) without echoing it, and accepts 32', async () => {
    expect(SHORT).toHaveLength(31);
    expect(LONG_ENOUGH).toHaveLength(32);
    for (const [token, env] of [
      [SHORT, {}],
      ['a', {}],
      ['${SHORT_TOKEN}', { SHORT_TOKEN: SHORT }],
      ['${SHORT_TOKEN:-change-me-admin-token}', {}],
    ] as const) {
      const file = configWith(token);
      try {
        const out = await runCli(['config', 'check', file], { ...process.env, ...env });
        expect(out.code).toBe(1);
        expect(out.stderr).toContain(MESSAGE);
        const shown = out.stdout + out.stderr.replace(file, '');
        for (const secret of [SHORT, 'change-me-admin-token']) expect(shown).not.toContain(secret);
      } finally {
        removeConfig(file);
      }
    }
    const file = configWith(LONG_ENOUGH);
    try {
      expect((await runCli(['config', 'check', file])).code).toBe(0);
    } finally {
      removeConfig(file);
    }
  });

  it('sluice serve refuses to start with a short token, and says why without echoing it', async () => {
    const file = configWith(SHORT);
    try {
      const started = startGateway(file);
      await expect(started).rejects.toThrow(/exited with 1 before listening/);
      const message = String(await started.catch((err: Error) => err.message));
      expect(message).toContain(MESSAGE);
      expect(message).not.toContain(SHORT);
    } finally {
      removeConfig(file);
    }
  });

  it('a reload to a short token is refused: the running token stays, the short one gets 401', async () => {
    const file = configWith(LONG_ENOUGH);
    const gateway = await startGateway(file);
    try {
      const admin = (token: string) => send(`${gateway.adminUrl}/v1/keys`, { headers: { authorization: `Bearer ${token}` } });
      expect((await admin(LONG_ENOUGH)).status).toBe(200);
      writeFileSync(file, readFileSync(file, 'utf8').replace(LONG_ENOUGH, SHORT));
      gateway.process.kill('SIGHUP');
      await waitFor(() => gateway.output.some((line) => line.includes('config reload refused')), 5000, { what: 'the refused reload in the log' });
      const refusal = gateway.output.find((line) => line.includes('config reload refused'))!;
      expect(refusal).toContain(MESSAGE);
      expect(gateway.output.join('\n')).not.toContain(SHORT);
      expect((await admin(LONG_ENOUGH)).status).toBe(200);
      expectEnvelope(await admin(SHORT), 401, 'invalid_admin_token');
    } finally {
      await gateway.stop();
      removeConfig(file);
    }
  });
});

// ---- 3. bodies over 16 KB --------------------------------------------------------------------------

describe('a key API body over 16 KB: 413 with Connection: close, read by the client rather than a reset', () => {
  const MB = 1024 * 1024;
  const jsonOfSize = (bytes: number) => {
    const shell = '{"name":"","tier":"free"}';
    return Buffer.from(shell.replace('""', `"${'n'.repeat(bytes - shell.length)}"`));
  };

  function expect413(res: { status: number; headers: Record<string, string>; body: string }) {
    const error = expectEnvelope(res, 413, 'payload_too_large');
    expect(error.details).toEqual({ max_body_bytes: 16384 });
    expect(error.message).toBe('The request body is larger than the key API accepts (16384 bytes).');
    expect(res.headers.connection).toBe('close');
  }

  it('a Content-Length over the limit is answered before any of the body is sent', async () => {
    const client = await rawClient();
    try {
      client.socket.write(head('POST', '/v1/keys', { 'content-type': 'application/json', 'content-length': MB }));
      expect413(await firstResponse(client, 3000));
      // The client sends its megabyte anyway: it is read and dropped, the connection is not reset under it.
      await new Promise<void>((resolve) => client.socket.write(Buffer.alloc(MB, 'x'), () => resolve()));
      await client.closed;
      expect(client.error()).toBeUndefined();
    } finally {
      client.socket.destroy();
    }
  });

  /** Writes `payload` in 64 KB pieces, a few ms apart (a client on a real link), not reading meanwhile. */
  async function writeWithoutReading(client: RawClient, payload: Buffer): Promise<void> {
    client.socket.pause(); // what arrives stays in the kernel buffer, where a reset would destroy it
    for (let at = 0; at < payload.length && !client.socket.destroyed; at += 64 * 1024) {
      await new Promise<void>((resolve) => client.socket.write(payload.subarray(at, at + 64 * 1024), () => resolve()));
      await sleep(5);
    }
    client.socket.resume();
  }

  it.each([
    ['Content-Length', (body: Buffer) => Buffer.concat([Buffer.from(head('POST', '/v1/keys', { 'content-type': 'application/json', 'content-length': body.length })), body])],
    [
      'chunked',
      (body: Buffer) => {
        const chunks: Buffer[] = [Buffer.from(head('POST', '/v1/keys', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }))];
        for (let at = 0; at < body.length; at += 8192) {
          const part = body.subarray(at, at + 8192);
          chunks.push(Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n'));
        }
        return Buffer.concat([...chunks, Buffer.from('0\r\n\r\n')]);
      },
    ],
  ])('a client that writes a 1 MB JSON body with %s, and only then reads, gets the 413 envelope (no reset, no EPIPE)', async (_framing, frame) => {
    const client = await rawClient('127.0.0.40');
    try {
      await writeWithoutReading(client, frame(jsonOfSize(MB)));
      expect413(await firstResponse(client, 8000));
      expect(client.error()).toBeUndefined();
      await client.closed;
      expect(client.error()).toBeUndefined();
    } finally {
      client.socket.destroy();
    }
  });

  it('a chunked body is refused as soon as it passes 16 KB, not once it has all arrived', async () => {
    const client = await rawClient('127.0.0.40');
    try {
      client.socket.write(head('POST', '/v1/keys', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }));
      const part = Buffer.alloc(8193, 'a');
      for (let i = 0; i < 2; i++) client.socket.write(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
      expect413(await firstResponse(client, 3000)); // the rest (and the last chunk) never sent
    } finally {
      client.socket.destroy();
    }
  });

  it('16 KB exactly is read (and judged on its content); one byte more is 413', async () => {
    const client = from('127.0.0.40');
    const atLimit = await client('/v1/keys', { method: 'POST', body: jsonOfSize(16384) });
    expectEnvelope(atLimit, 400, 'invalid_parameters'); // a 16 KB name is too long, but it was read
    expect(atLimit.json.error.details.field).toBe('name');
    const overLimit = await client('/v1/keys', { method: 'POST', body: jsonOfSize(16385) });
    expect413({ status: overLimit.status, headers: overLimit.headers as Record<string, string>, body: overLimit.text });
  });

  it('after a 413 nothing more on that connection is served: what follows the body is dropped, not read as a request', async () => {
    const body = jsonOfSize(20_000);
    const pipelined = head('DELETE', '/v1/keys/key_00000000', {});
    const res = await rawRequest(
      Buffer.concat([Buffer.from(head('POST', '/v1/keys', { 'content-type': 'application/json', 'content-length': body.length })), body, Buffer.from(pipelined)]),
      '127.0.0.40',
    );
    expect413(res);
    await sleep(300);
    expect(res.rest).toBe('');
  });

  it('an unauthenticated request with a 1 MB body gets its 401, not a reset', async () => {
    const client = await rawClient('127.0.0.41');
    try {
      const body = jsonOfSize(MB);
      await writeWithoutReading(
        client,
        Buffer.concat([Buffer.from(head('POST', '/v1/keys', { 'content-type': 'application/json', 'content-length': body.length }, 'wrong-token')), body]),
      );
      expectEnvelope(await firstResponse(client, 8000), 401, 'invalid_admin_token');
      await client.closed;
      expect(client.error()).toBeUndefined();
    } finally {
      client.socket.destroy();
    }
  });
});

// ---- 4. what node's parser refuses -----------------------------------------------------------------

describe("requests node's parser refuses get the public port's envelopes, not node's bare answers", () => {
  const filler = (bytes: number) => `X-Filler: ${'f'.repeat(bytes)}\r\n`;

  it.each([
    ['one 20 KB header', `GET /healthz HTTP/1.1\r\nHost: admin\r\n${filler(20 * 1024)}\r\n`],
    ['many small headers adding up to 20 KB', `GET /v1/keys HTTP/1.1\r\nHost: admin\r\n${Array.from({ length: 40 }, () => filler(500)).join('')}\r\n`],
    ['a 20 KB request target', `GET /v1/keys/${'k'.repeat(20 * 1024)} HTTP/1.1\r\nHost: admin\r\n\r\n`],
  ])('431 headers_too_large: %s', async (_name, payload) => {
    const res = await rawRequest(payload, '127.0.0.50');
    expectEnvelope(res, 431, 'headers_too_large');
    expect(res.headers.connection).toBe('close');
  });

  it.each([
    ['a header line without a colon', 'GET /healthz HTTP/1.1\r\nHost: admin\r\nNo colon here\r\n\r\n'],
    ['a space inside a header name', 'GET /healthz HTTP/1.1\r\nHost: admin\r\nX Bad: 1\r\n\r\n'],
    ['a control character in a header value', 'GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Bad: a\x01b\r\n\r\n'],
    ['a NUL in a header name', 'GET /healthz HTTP/1.1\r\nHost: admin\r\nX-\x00: 1\r\n\r\n'],
    ['an obsolete folded header line', 'GET /healthz HTTP/1.1\r\nHost: admin\r\nX-A: 1\r\n folded\r\n\r\n'],
    ['a request line with a word after the version', 'GET /healthz HTTP/1.1 x\r\nHost: admin\r\n\r\n'],
    ['a space inside the request target', 'GET /heal thz HTTP/1.1\r\nHost: admin\r\n\r\n'],
    ['a bare LF ending the request line', 'GET /healthz HTTP/1.1\nHost: admin\r\n\r\n'],
    ['an unknown HTTP version', 'GET /healthz HTTP/9.9\r\nHost: admin\r\n\r\n'],
    ['a method with a bad character', 'G@T /healthz HTTP/1.1\r\nHost: admin\r\n\r\n'],
    ['garbage instead of a request', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n'],
    ['a bad Content-Length', 'POST /v1/keys HTTP/1.1\r\nHost: admin\r\nContent-Length: 1x\r\n\r\n'],
    ['Content-Length with Transfer-Encoding', 'POST /v1/keys HTTP/1.1\r\nHost: admin\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    // Refused by the same framing rules as on the public port (http/framing.ts).
    ['no Host in HTTP/1.1', 'GET /healthz HTTP/1.1\r\n\r\n'],
    ['two Host headers', 'GET /healthz HTTP/1.1\r\nHost: admin\r\nHost: other\r\n\r\n'],
    ['Transfer-Encoding in HTTP/1.0', 'POST /v1/keys HTTP/1.0\r\nHost: admin\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['a transfer coding other than chunked', 'POST /v1/keys HTTP/1.1\r\nHost: admin\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'],
  ])('400 invalid_request: %s', async (_name, payload) => {
    const res = await rawRequest(payload, '127.0.0.50');
    expectEnvelope(res, 400, 'invalid_request');
    expect(res.headers.connection).toBe('close');
  });

  it('400 invalid_request when a chunked key API body breaks its framing', async () => {
    const res = await rawRequest(
      `${head('POST', '/v1/keys', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' })}5\r\n{"nam\r\nZZ\r\n`,
      '127.0.0.50',
    );
    expectEnvelope(res, 400, 'invalid_request');
    expect(res.headers.connection).toBe('close');
  });

  it.each([
    ['the request line, then nothing', 'GET /healthz HTTP/1.1\r\n'],
    ['half the headers, then nothing', 'GET /v1/keys HTTP/1.1\r\nHost: admin\r\nAuthor'],
    ['nothing but the method', 'POST'],
  ])('408 request_timeout when the headers are too slow (listen.headers_timeout): %s', async (_name, payload) => {
    const started = Date.now();
    const res = await rawRequest(payload, '127.0.0.50', HEADERS_TIMEOUT_MS + 4000);
    expectEnvelope(res, 408, 'request_timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
  });

  it.each([
    ['Content-Length', { 'content-length': 100 }, '{"name":"slow"'],
    ['chunked', { 'transfer-encoding': 'chunked' }, 'e\r\n{"name":"slow"\r\n'],
  ])('408 request_timeout with Connection: close when a %s body stops arriving (listen.body_timeout)', async (_name, headers, start) => {
    const started = Date.now();
    const res = await rawRequest(`${head('POST', '/v1/keys', { 'content-type': 'application/json', ...headers })}${start}`, '127.0.0.50', BODY_TIMEOUT_MS + 4000);
    expectEnvelope(res, 408, 'request_timeout');
    expect(res.headers.connection).toBe('close');
    expect(Date.now() - started).toBeGreaterThanOrEqual(BODY_TIMEOUT_MS - 50);
  });

  it('an Expect other than 100-continue is served, not a bare 417', async () => {
    const res = await rawRequest('GET /healthz HTTP/1.1\r\nHost: admin\r\nExpect: something-else\r\nConnection: close\r\n\r\n', '127.0.0.50');
    expect(res.status).toBe(200);
  });

  it('every refusal was counted in sluice_errors_total, and the admin port still serves', async () => {
    const metrics = (await send(`${stack.gateway.adminUrl}/metrics`)).text;
    for (const code of ['headers_too_large', 'invalid_request', 'request_timeout']) {
      expect(metrics).toMatch(new RegExp(`sluice_errors_total\\{[^}]*code="${code}"[^}]*\\} [1-9]`));
    }
    expect((await from('127.0.0.50')('/v1/keys')).status).toBe(200);
  });
});

// ---- 5. text that is not valid Unicode --------------------------------------------------------------

describe('JSON strings that are not valid Unicode are refused (400 invalid_parameters), never echoed nor stored', () => {
  const admin = from('127.0.0.60');
  /** JSON text with `\uXXXX` escapes written as is (JSON.stringify would keep them, but this is what a client sends). */
  const post = (json: string) => admin('/v1/keys', { method: 'POST', body: json });
  const LONE = ['\\ud800', '\\udbff', '\\udc00', '\\udfff', 'x\\ud800', '\\ud800x', '\\udc00\\ud800', 'ok\\ud83d'];

  async function keyCount(): Promise<number> {
    const res = await admin('/v1/keys?limit=500');
    expect(res.status).toBe(200);
    return res.json.keys.length;
  }

  function expectRefused(res: SimpleResponse, field: string) {
    const error = expectEnvelope(res, 400, 'invalid_parameters');
    expect(error.details).toEqual({ field, requirement: 'valid Unicode text (no lone UTF-16 surrogates)' });
    expect(res.text).not.toMatch(/\\u?d[89a-f][0-9a-f]{2}/i); // no surrogate escape is echoed
  }

  it('POST /v1/keys: a lone surrogate in any string field, list item, or key name', async () => {
    const before = await keyCount();
    for (const lone of LONE) {
      expectRefused(await post(`{"name":"${lone}","tier":"free"}`), 'name');
      expectRefused(await post(`{"name":"n","tier":"fr${lone}ee"}`), 'tier');
      expectRefused(await post(`{"name":"n","tier":"free","scopes":["users:read","${lone}"]}`), 'scopes[1]');
      expectRefused(await post(`{"name":"n","tier":"free","expires_at":"2099-01-01T00:00:00Z${lone}"}`), 'expires_at');
      expectRefused(await post(`{"name":"n","tier":"free","key":"sk_test_0123456789abcdef${lone}"}`), 'key');
      expectRefused(await post(`{"name":"n","tier":"free","${lone}":1}`), 'body');
      expectRefused(await post(`{"name":"n","tier":"free","extra":{"a":["${lone}"]}}`), 'extra.a[0]');
    }
    expect(await keyCount()).toBe(before);
  });

  it('PATCH /v1/keys/{id} and the rotate body: the same, and the key is left as it was', async () => {
    const created = await post('{"name":"unchanged","tier":"free"}');
    expect(created.status).toBe(201);
    const id = created.json.id;
    for (const lone of LONE) {
      const patch = (json: string) => admin(`/v1/keys/${id}`, { method: 'PATCH', body: json });
      expectRefused(await patch(`{"name":"${lone}"}`), 'name');
      expectRefused(await patch(`{"tier":"${lone}"}`), 'tier');
      expectRefused(await patch(`{"scopes":["${lone}"]}`), 'scopes[0]');
      expectRefused(await patch(`{"expires_at":"${lone}"}`), 'expires_at');
      expectRefused(await patch(`{"${lone}":"x"}`), 'body');
      expectRefused(await admin(`/v1/keys/${id}/rotate`, { method: 'POST', body: `{"note":"${lone}"}` }), 'note');
    }
    const after = await admin(`/v1/keys/${id}`);
    expect(after.json).toMatchObject({ name: 'unchanged', tier: 'free' });
    expect(after.json.rotated_at).toBeUndefined();
  });

  it('a body that is not UTF-8 (stray, overlong, truncated or surrogate-encoded bytes) is refused, not read with U+FFFD', async () => {
    const before = await keyCount();
    for (const bytes of [[0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0x80]]) {
      const body = Buffer.concat([Buffer.from('{"name":"a'), Buffer.from(bytes), Buffer.from('b","tier":"free"}')]);
      const error = expectEnvelope(await post(body as unknown as string), 400, 'invalid_parameters');
      expect(error.details).toEqual({ field: 'body', requirement: 'valid UTF-8' });
    }
    expect(await keyCount()).toBe(before);
  });

  it('valid text outside ASCII (accents, CJK, a surrogate pair, U+FFFD itself) is accepted and echoed exactly', async () => {
    for (const name of ['Café Zoë', '東京', 'emoji \u{1F600}', 'replacement \uFFFD', 'max \u{10FFFF}']) {
      const res = await post(JSON.stringify({ name, tier: 'free' }));
      expect(res.status).toBe(201);
      expect(res.json.name).toBe(name);
      expect((await admin(`/v1/keys/${res.json.id}`)).json.name).toBe(name);
    }
    // The same pair written as JSON escapes is one valid character, not two lone halves.
    const escaped = await post('{"name":"pair \\ud83d\\ude00","tier":"free"}');
    expect(escaped.status).toBe(201);
    expect(escaped.json.name).toBe('pair \u{1F600}');
  });

  it('sluice keys import refuses a backup line with a lone surrogate or bytes that are not UTF-8, naming the line, and imports nothing', async () => {
    const config = writeConfig(readFileSync(stack.configFile, 'utf8'));
    const hash = 'a'.repeat(64);
    const header = JSON.stringify({ format: 'sluice-keys/1', exported_at: '2026-01-01T00:00:00Z' });
    const record = (name: string, id: string) =>
      `{"id":"${id}","name":"${name}","tier":"free","status":"active","created_at":"2026-01-01T00:00:00Z","secret_hashes":["${hash}"]}`;
    try {
      const cases: [Buffer, RegExp][] = [
        [Buffer.from(`${header}\n${record('ok', 'key_0000aaaa')}\n${record('bad\\ud800', 'key_0000bbbb')}\n`), /line 3: name: expected valid Unicode text/],
        [Buffer.from(`${header}\n${record('ok', 'key_0000aaaa')}\n${record('ok', 'key_0000bbbb').replace('"tier"', '"\\udc00":1,"tier"')}\n`), /line 3: line: expected valid Unicode text/],
        [Buffer.concat([Buffer.from(`${header}\n${record('a', 'key_0000aaaa')}`.replace('"a"', '"a')), Buffer.from([0xff]), Buffer.from('"\n')]), /not valid UTF-8/],
      ];
      for (const [bytes, message] of cases) {
        const file = `${config}.jsonl`;
        writeFileSync(file, bytes);
        const out = await runCli(['keys', 'import', '--config', config, file]);
        expect(out.code).toBe(1);
        expect(out.stderr).toMatch(message);
        expect(out.stderr).toContain('nothing was imported');
        expectEnvelope(await admin('/v1/keys/key_0000aaaa'), 404, 'key_not_found');
      }
    } finally {
      removeConfig(config);
    }
  });
});
