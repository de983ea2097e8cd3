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
