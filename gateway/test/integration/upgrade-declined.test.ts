import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, parseRawResponse, rawExchange, send } from '../support/http';
import { closedPort } from '../support/ports';
import { waitFor } from '../support/wait';

// WebSocket upgrades the upstream declines (it answers 404, 401, 426, 500... instead of 101): the
// client gets the upstream's own answer, and the target's breaker does not take it for a fault.
// Real faults (reset, garbage, refused, timeout) still answer an envelope and count.

const KEY = 'sk_test_upgrade_0123456789abcdef';

const NOT_FOUND_BODY = JSON.stringify({ error: 'no such room', room: 'lobby' });
const BIG_BODY_BYTES = 1024 * 1024;

let upstream: DecliningUpstream;
let gateway: TestGateway;
let configFile: string;

beforeAll(async () => {
  upstream = await startDecliningUpstream();
  const deadPort = await closedPort();
  // One upstream section per case, so each case has a breaker of its own.
  const tight = { failures: 2, cooldown: '30s' };
  const sections: Record<string, unknown> = {
    answer: { targets: [upstream.url], breaker: tight },
    mixed: { targets: [upstream.url], breaker: tight },
    fives: { targets: [upstream.url], breaker: { ...tight, on_5xx: false } },
    fives_counted: { targets: [upstream.url], breaker: { ...tight, on_5xx: true } },
    faulty: { targets: [upstream.url], breaker: tight },
    dead: { targets: [`http://127.0.0.1:${deadPort}`], timeout_ms: 2000, breaker: tight },
    slow: { targets: [upstream.url], timeout_ms: 500, breaker: tight },
    gone: { targets: [upstream.url], breaker: { failures: 1, cooldown: '30s' } },
    accepted: { targets: [upstream.url], breaker: tight },
  };
  configFile = writeConfig(
    baseConfig({
      tiers: { t: { limits: [{ requests: 1000, per: '1m' }], scopes: ['*'] } },
      upstreams: sections,
      routes: Object.keys(sections).map((name) => ({ name, match: { path_prefix: `/${name}` }, upstream: name })),
      keys: [{ name: 'k', tier: 't', key: KEY }],
    }),
  );
  gateway = await startGateway(configFile);
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  if (configFile) removeConfig(configFile);
});

/** The bytes of a WebSocket upgrade request with our key. */
function upgradeRequest(path: string, requestId: string): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nx-api-key: ${KEY}\r\nx-request-id: ${requestId}\r\n\r\n`
  );
}

/** An upgrade on a raw socket: what came back before the gateway closed the connection (5 s at most). */
async function upgrade(path: string) {
  const requestId = `up-${randomBytes(6).toString('hex')}`;
  const started = Date.now();
  const raw = await rawExchange(gateway.port, upgradeRequest(path, requestId));
  return { ...parseRawResponse(raw), requestId, closedAfterMs: Date.now() - started };
}

const plainGet = (path: string) => send(`${gateway.url}${path}`, { headers: { 'x-api-key': KEY } });

/** The access-log line of one request (the gateway writes it once the request is over). */
async function accessLog(requestId: string): Promise<any> {
  for (let waited = 0; waited < 3000; waited += 50) {
    const line = gateway.output.find((l) => l.includes('"msg":"request"') && l.includes(`"request_id":"${requestId}"`));
    if (line) return JSON.parse(line);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no access-log line for ${requestId}`);
}

describe('an upgrade the upstream declines', () => {
  it("reaches the client as the upstream's own answer (status, headers, body), with X-Request-Id, then the connection closes", async () => {
    const res = await upgrade('/answer/decline/404');
    expect(res.status).toBe(404);
    expect(res.body).toBe(NOT_FOUND_BODY); // not the 502 envelope
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['x-room']).toBe('lobby');
    expect(res.headers['x-request-id']).toBe(res.requestId);
    expect(res.headers['x-ratelimit-limit']).toBe('1000'); // the gateway's own headers, as on every answer
    expect(res.headers.connection).toBe('close');
    expect(res.closedAfterMs).toBeLessThan(2000); // closed by the gateway, not by rawExchange giving up
    expect((await accessLog(res.requestId)).status).toBe(404);
  });

  it('passes no hop-by-hop header, and de-chunks a chunked body', async () => {
    const res = await upgrade('/answer/decline/401');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="rooms"');
    expect(res.body).toBe('hello, who are you?');
    expect(res.headers['transfer-encoding']).toBeUndefined();
    expect(res.headers['keep-alive']).toBeUndefined();
    expect(res.headers['x-upstream-hop']).toBeUndefined(); // listed in the upstream's Connection header
    expect(res.headers.connection).toBe('close');
  });

  it('a 426 keeps its Upgrade offer (WebSocket), the header that gives the status its meaning', async () => {
    const res = await upgrade('/answer/decline/426');
    expect(res.status).toBe(426);
    expect(res.headers.upgrade).toBe('websocket');
    expect(res.headers['sec-websocket-version']).toBe('13');
  });

  it('streams a large body through whole', async () => {
    const res = await upgrade('/answer/decline/big');
    expect(res.status).toBe(404);
    expect(res.headers['content-length']).toBe(String(BIG_BODY_BYTES));
    expect(res.body.length).toBe(BIG_BODY_BYTES);
    expect(res.body).toBe('x'.repeat(BIG_BODY_BYTES));
  });

  it('streams with backpressure: a client that stops reading stalls the upstream; one that leaves stops it', async () => {
    const socket = net.connect(gateway.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(upgradeRequest('/answer/decline/endless', 'up-endless'));
    const first = await new Promise<string>((resolve) => socket.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1'))));
    expect(first).toMatch(/^HTTP\/1\.1 404 /);
    socket.pause(); // reads nothing more: every buffer on the way fills, then the upstream must wait
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sent = upstream.endlessBytes();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(upstream.endlessBytes() - sent).toBeLessThan(4 * 1024 * 1024);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    socket.resetAndDestroy();
    await waitFor(() => upstream.streaming() === 0, 3000); // the gateway dropped the upstream exchange
  });

  it('is no breaker failure: ten in a row (404, 401, 426) leave the target in service', async () => {
    const statuses = [];
    for (let i = 0; i < 10; i++) statuses.push((await upgrade(`/mixed/decline/${[404, 401, 426][i % 3]}`)).status);
    expect(statuses).toEqual([404, 401, 426, 404, 401, 426, 404, 401, 426, 404]);
    expect((await plainGet('/mixed/ok')).status).toBe(200);
  });

  it('a 500 decline follows on_5xx: passed through either way, counted only where on_5xx is true', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await upgrade('/fives/decline/500');
      expect([res.status, res.body]).toEqual([500, 'upstream broke']);
    }
    expect((await plainGet('/fives/ok')).status).toBe(200);

    for (let i = 0; i < 2; i++) expect((await upgrade('/fives_counted/decline/500')).status).toBe(500);
    expectEnvelope(await plainGet('/fives_counted/ok'), 503, 'service_unavailable');
  });
});

describe('a real upstream fault on an upgrade', () => {
  it('a reset, then garbage: 502 each, and they count (the target is ejected after `failures`)', async () => {
    const reset = await upgrade('/faulty/reset');
    expectEnvelope(reset, 502, 'bad_gateway');
    const garbage = await upgrade('/faulty/garbage');
    expectEnvelope(garbage, 502, 'bad_gateway');
    expectEnvelope(await plainGet('/faulty/ok'), 503, 'service_unavailable');
  });

  it('a refused connection: 502, counted', async () => {
    for (let i = 0; i < 2; i++) expectEnvelope(await upgrade('/dead/ws'), 502, 'bad_gateway');
    expectEnvelope(await upgrade('/dead/ws'), 503, 'service_unavailable');
  });

  it('no answer within timeout_ms: 504 gateway_timeout', async () => {
    const started = Date.now();
    expectEnvelope(await upgrade('/slow/hang'), 504, 'gateway_timeout');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('a client that leaves while the upstream is silent: the upstream exchange is dropped, and not held against the target', async () => {
    await waitFor(() => upstream.hanging() === 0, 3000); // the timeout case's exchange is gone
    const socket = net.connect(gateway.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(upgradeRequest('/gone/hang', 'up-gone'));
    await waitFor(() => upstream.hanging() === 1, 3000);
    socket.resetAndDestroy(); // gone for good (a FIN alone leaves a half-open socket the gateway keeps waiting on)
    await waitFor(() => upstream.hanging() === 0, 3000); // the gateway closed its upstream socket
    // failures: 1, so one counted failure would have ejected it.
    expect((await plainGet('/gone/ok')).status).toBe(200);
  });
});

it('an accepted upgrade still works end to end: 101 with X-Request-Id, then messages both ways', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/accepted/ws`, { headers: { 'x-api-key': KEY, 'x-request-id': 'ws-accepted-1' } });
  const upgraded = new Promise<http.IncomingMessage>((resolve) => ws.once('upgrade', resolve));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  expect((await upgraded).headers['x-request-id']).toBe('ws-accepted-1');
  const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(data.toString())));
  ws.send('ping through sluice');
  expect(await echoed).toBe('ping through sluice');
  ws.close();
  expect((await accessLog('ws-accepted-1')).status).toBe(101);
});


interface DecliningUpstream {
  url: string;
  /** Upgrade requests the upstream is sitting on without an answer (`hang`), still open. */
  hanging(): number;
  /** Declined answers with an endless body (`decline/endless`) still being sent, and the bytes written so far. */
  streaming(): number;
  endlessBytes(): number;
  close(): Promise<void>;
}

/** Raw HTTP/1.1 answers written on the upgrade socket, as WebSocket servers decline (ws's abortHandshake does the same). */
const DECLINES: Record<string, string | Buffer> = {
  '404':
    `HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nx-room: lobby\r\nx-request-id: upstream-own-id\r\n` +
    `content-length: ${Buffer.byteLength(NOT_FOUND_BODY)}\r\nconnection: close\r\n\r\n${NOT_FOUND_BODY}`,
  // Chunked, with hop-by-hop headers: none of them may reach the client.
  '401':
    'HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm="rooms"\r\ntransfer-encoding: chunked\r\n' +
    'connection: keep-alive, x-upstream-hop\r\nkeep-alive: timeout=5\r\nx-upstream-hop: secret\r\n\r\n' +
    '7\r\nhello, \r\nc\r\nwho are you?\r\n0\r\n\r\n',
  '426': 'HTTP/1.1 426 Upgrade Required\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\ncontent-length: 0\r\n\r\n',
  '500': 'HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 14\r\nconnection: close\r\n\r\nupstream broke',
  big: Buffer.concat([
    Buffer.from(`HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: ${BIG_BODY_BYTES}\r\nconnection: close\r\n\r\n`),
    Buffer.alloc(BIG_BODY_BYTES, 'x'),
  ]),
};

const ENDLESS_CHUNK = Buffer.alloc(64 * 1024, 'y');

/**
 * A node:http upstream whose upgrade handling is picked by the path: `.../decline/<DECLINES key>`,
 * `.../decline/endless` (a 404 whose body never ends),
 * `reset` (TCP reset), `garbage` (not HTTP), `hang` (never answers), `ws` (accepts, echoes).
 * Plain requests get 200.
 */
async function startDecliningUpstream(): Promise<DecliningUpstream> {
  const sockets = new Set<net.Socket>();
  const hung = new Set<net.Socket>();
  const streaming = new Set<net.Socket>();
  let endless = 0;
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => {}); // node drops its own error listener on upgrade
    const segments = (req.url ?? '/').split('?')[0].split('/').filter(Boolean);
    const last = segments[segments.length - 1];
    if (segments[segments.length - 2] === 'decline' && DECLINES[last] !== undefined) {
      socket.end(DECLINES[last]);
    } else if (last === 'endless') {
      streaming.add(socket);
      socket.once('close', () => streaming.delete(socket));
      socket.write('HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n');
      const pump = () => {
        while (!socket.destroyed) {
          endless += ENDLESS_CHUNK.length;
          if (!socket.write(ENDLESS_CHUNK)) return void socket.once('drain', pump);
        }
      };
      pump();
    } else if (last === 'reset') {
      socket.resetAndDestroy();
    } else if (last === 'garbage') {
      socket.end('\x00\x01garbage not http\r\n\r\n');
    } else if (last === 'hang') {
      hung.add(socket);
      socket.once('end', () => socket.destroy()); // the server allows half-open sockets: close ours when the gateway closes its side
      socket.once('close', () => hung.delete(socket));
    } else if (last === 'ws') {
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('error', () => {});
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      });
    } else {
      socket.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hanging: () => hung.size,
    streaming: () => streaming.size,
    endlessBytes: () => endless,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
