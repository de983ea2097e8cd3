// Tests of the misbehaving upstream and the port helpers: real servers, real sockets.
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { Agent, request } from 'undici';
import WebSocket from 'ws';
import { closedPort, freePort } from '../support/ports';
import { hugeByteAt, startUpstream, TestUpstream } from '../support/upstream';

let upstream: TestUpstream;
// Own agent, closed at the end, so no keep-alive socket outlives the suite.
const agent = new Agent({ connections: 8 });

beforeAll(async () => {
  upstream = await startUpstream();
});

afterAll(async () => {
  await upstream.close();
  await agent.close();
});

beforeEach(() => upstream.reset());

const call = (path: string, opts: Omit<Parameters<typeof request>[1], 'dispatcher'> = {}) =>
  request(`${upstream.url}${path}`, { ...opts, dispatcher: agent });

/** A node:http GET that resolves with the client-side error (or 'no error'). */
function httpGetError(path: string, headers: http.OutgoingHttpHeaders = {}): Promise<NodeJS.ErrnoException | 'no error'> {
  return new Promise((resolve) => {
    const req = http.get(`${upstream.url}${path}`, { agent: false, headers }, (res) => {
      res.resume();
      res.once('end', () => resolve('no error'));
      res.once('error', resolve);
    });
    req.once('error', resolve);
  });
}

describe('ports', () => {
  test('freePort can be listened on', async () => {
    const port = await freePort();
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    await new Promise((resolve) => server.close(resolve));
  });

  test('closedPort refuses connections', async () => {
    const port = await closedPort();
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('error', resolve);
      socket.once('connect', () => socket.destroy());
    });
    expect(err.code).toBe('ECONNREFUSED');
  });
});

describe('upstream behaviours', () => {
  test('ok, under any route prefix, tagged with the upstream port', async () => {
    for (const path of ['/ok', '/v1/users/ok']) {
      const res = await call(path);
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.headers['x-upstream-port']).toBe(String(upstream.port));
      expect(await res.body.json()).toEqual({ ok: true });
    }
    expect(upstream.requests.map((r) => r.url)).toEqual(['/ok', '/v1/users/ok']);
  });

  test('headers (and unknown names) describe the request and are recorded', async () => {
    const res = await call('/api/headers?x=1', { method: 'POST', body: 'hello', headers: { 'x-custom': 'yes' } });
    expect(await res.body.json()).toMatchObject({
      method: 'POST',
      url: '/api/headers?x=1',
      headers: { 'x-custom': 'yes' },
      bodyBytes: 5,
    });
    expect(await (await call('/whatever')).body.json()).toMatchObject({ method: 'GET', bodyBytes: 0 });

    expect(upstream.requests).toHaveLength(2);
    expect(upstream.requests[0]).toMatchObject({ method: 'POST', url: '/api/headers?x=1', bodyBytes: 5 });
    expect(upstream.requests[0].headers['x-custom']).toBe('yes');
    upstream.reset();
    expect(upstream.requests).toHaveLength(0);
  });

  test('echo streams back the same 5 MB body and its content type', async () => {
    const sent = crypto.randomBytes(5 * 1024 * 1024);
    const res = await call('/echo', { method: 'POST', body: sent, headers: { 'content-type': 'image/png' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.headers['x-echo-content-type']).toBe('image/png');
    const received = Buffer.from(await res.body.arrayBuffer());
    expect(received.equals(sent)).toBe(true);
    expect(upstream.requests[0].bodyBytes).toBe(sent.length);
  });

  test('slow waits the given time', async () => {
    const start = Date.now();
    const res = await call('/slow?ms=300');
    expect(await res.body.json()).toEqual({ ok: true });
    expect(Date.now() - start).toBeGreaterThanOrEqual(290);
  });

  test('hang never answers, and close() still ends it', async () => {
    const own = await startUpstream();
    const pending = request(`${own.url}/hang`, { method: 'POST', body: 'abc', dispatcher: agent });
    const outcome = pending.then(
      () => 'answered',
      (err: { code?: string }) => err.code,
    );
    const early = await Promise.race([outcome, new Promise((resolve) => setTimeout(() => resolve('pending'), 300))]);
    expect(early).toBe('pending');
    expect(own.requests).toMatchObject([{ url: '/hang', bodyBytes: 3 }]);

    await own.close();
    expect(await outcome).toBe('UND_ERR_SOCKET');
  });

  test('reset sends part of the body, then the client sees a socket error', async () => {
    const res = await call('/reset');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe('1000');
    await expect(res.body.arrayBuffer()).rejects.toMatchObject({ code: 'UND_ERR_SOCKET' });
  });

  test('reset-early closes the socket without a response', async () => {
    await expect(call('/v1/reset-early')).rejects.toMatchObject({ code: 'UND_ERR_SOCKET' });
    expect(upstream.requests.map((r) => r.url)).toEqual(['/v1/reset-early']);
  });

  test('garbage gives the client a parse error', async () => {
    const err = await httpGetError('/garbage');
    expect(err).not.toBe('no error');
    expect((err as NodeJS.ErrnoException).code).toMatch(/^HPE_/);
  });

  test('huge streams exactly N bytes of the pattern', async () => {
    const total = 50 * 1024 * 1024 + 7; // not a multiple of the 64 KiB chunk
    const res = await call(`/huge?bytes=${total}`);
    expect(res.headers['content-length']).toBe(String(total));
    let count = 0;
    let patternOk = true;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      // Spot-check first and last byte of every chunk against the pattern.
      if (chunk[0] !== hugeByteAt(count) || chunk[chunk.length - 1] !== hugeByteAt(count + chunk.length - 1)) {
        patternOk = false;
      }
      count += chunk.length;
    }
    expect(count).toBe(total);
    expect(patternOk).toBe(true);
  });

  test('chunked sends N chunks with transfer-encoding chunked', async () => {
    const res = await call('/chunked?chunks=4');
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(res.headers['content-length']).toBeUndefined();
    expect(await res.body.text()).toBe('chunk-0\nchunk-1\nchunk-2\nchunk-3\n');
  });

  test('status answers with the given code', async () => {
    const res = await call('/x/status?code=503');
    expect(res.statusCode).toBe(503);
    expect(res.headers['x-upstream-status']).toBe('503');
    expect(res.headers['x-upstream-port']).toBe(String(upstream.port));
    expect(await res.body.json()).toEqual({ status: 503 });

    const noContent = await call('/status?code=204');
    expect(noContent.statusCode).toBe(204);
    expect(await noContent.body.text()).toBe('');
  });

  test('websocket: hello with the upgrade headers, then echo', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${upstream.port}/v1/ws`, { headers: { 'x-custom': 'ws-yes' } });
    type Message = { data: WebSocket.RawData; isBinary: boolean };
    const inbox: Message[] = [];
    let waiting: ((m: Message) => void) | undefined;
    ws.on('message', (data, isBinary) => {
      if (waiting) waiting({ data, isBinary });
      else inbox.push({ data, isBinary });
      waiting = undefined;
    });
    const next = () => (inbox.length ? Promise.resolve(inbox.shift()!) : new Promise<Message>((r) => (waiting = r)));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));

    const hello = JSON.parse((await next()).data.toString());
    expect(hello).toMatchObject({ hello: true, headers: { 'x-custom': 'ws-yes', upgrade: 'websocket' } });

    ws.send('ping');
    const text = await next();
    expect(text.isBinary).toBe(false);
    expect(text.data.toString()).toBe('ping');
    ws.send(Buffer.from([1, 2, 3]));
    const binary = await next();
    expect(binary.isBinary).toBe(true);
    expect(Buffer.from(binary.data as Buffer)).toEqual(Buffer.from([1, 2, 3]));

    ws.close();
    await new Promise((resolve) => ws.once('close', resolve));
    expect(upstream.requests.map((r) => r.url)).toEqual(['/v1/ws']);
  });

  test('a non-websocket upgrade gets its socket destroyed', async () => {
    const err = await httpGetError('/v1/ws', { connection: 'Upgrade', upgrade: 'h2c' });
    expect(err).toMatchObject({ code: 'ECONNRESET' }); // "socket hang up"
  });
});
