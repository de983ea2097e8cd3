/**
 * A misbehaving upstream for integration tests: a real node:http server (+ ws) in this process.
 * The behaviour is picked by the LAST path segment, so any route prefix works
 * (`/v1/users/ok` and `/ok` both mean `ok`); parameters come from the query string.
 */
import http from 'node:http';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { WebSocketServer } from 'ws';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
  /** Date.now() when it was recorded */
  at: number;
}

/** What every request gets while a fault is set, whatever its path (see TestUpstream.setFault). */
export type UpstreamFault = 'reset' | 'hang' | 'garbage';

export interface TestUpstream {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  /** every request received (recorded when its body has been fully read or the request ended) */
  requests: RecordedRequest[];
  /** clear requests */
  reset(): void;
  /** Every request gets this behaviour until setFault(null), whatever its path. */
  setFault(fault: UpstreamFault | null): void;
  /** Stops listening (connects are refused) and drops open connections; listen() again on the same port. */
  refuse(): Promise<void>;
  listen(): Promise<void>;
  /** TCP connections open on the server right now (keep-alive, in flight and upgraded) */
  openSockets(): number;
  /** Responses under way right now: requests whose answer has neither finished nor been cut off. */
  activeResponses(): number;
  /** closes the server, all sockets and websockets */
  close(): Promise<void>;
}

const CHUNK = 64 * 1024;
// Byte i of every `huge` body is i % 256; 64 KiB is a multiple of 256, so one block repeats seamlessly.
const PATTERN = Buffer.from(Array.from({ length: CHUNK }, (_, i) => i & 0xff));

/** The byte at `offset` of a `huge` response body. */
export function hugeByteAt(offset: number): number {
  return offset & 0xff;
}

export async function startUpstream(): Promise<TestUpstream> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<net.Socket>();
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer();

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  let fault: UpstreamFault | null = null;
  const active = new Set<http.ServerResponse>();
  server.on('request', (req, res) => {
    active.add(res);
    res.once('close', () => active.delete(res));
    handle(req, res, port, requests, fault).catch((err) => {
      // e.g. status?code=42 (writeHead throws): answer 500 rather than crash the test process
      if (!res.headersSent) json(res, 500, { error: String(err) });
      else res.destroy();
    });
  });

  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => {}); // node drops its own error listener on upgrade
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyBytes: 0, at: Date.now() });
    if (lastSegment(req.url) !== 'ws' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
      ws.send(JSON.stringify({ hello: true, headers: req.headers }));
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });

  const listen = (onPort: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(onPort, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    reset: () => {
      requests.length = 0;
    },
    setFault: (next) => {
      fault = next;
    },
    refuse: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
    listen: () => listen(port),
    openSockets: () => sockets.size,
    activeResponses: () => active.size,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.close(() => resolve());
        // hung, keep-alive and upgraded sockets would otherwise keep the server open
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

async function handle(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  port: number,
  requests: RecordedRequest[],
  fault: UpstreamFault | null,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://upstream');
  const param = (name: string, fallback: number) => {
    const value = Number(url.searchParams.get(name) ?? NaN);
    return Number.isFinite(value) ? value : fallback;
  };
  // Aborted when the response closes (client gone, or close()), so no timer outlives it.
  const closed = new AbortController();
  res.once('close', () => closed.abort());
  const body = readAndRecord(req, requests);
  res.setHeader('x-upstream-port', port);

  switch (fault ?? lastSegment(req.url)) {
    case 'ok':
      await body;
      return json(res, 200, { ok: true });

    case 'echo': {
      const contentType = req.headers['content-type'];
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        ...(contentType ? { 'x-echo-content-type': contentType } : {}),
      });
      req.pipe(res); // streams, with backpressure, no buffering
      return;
    }

    case 'slow':
      await body;
      if (await wait(param('ms', 1000), closed.signal)) json(res, 200, { ok: true });
      return;

    case 'early-hints': // an interim 103 before the answer
      await body;
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      return json(res, 200, { ok: true });

    case 'hang':
      return; // the body is still read; close() destroys the socket

    case 'reset':
      await body;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1000 });
      res.write(Buffer.alloc(100, 'x'), () => req.socket.destroy());
      return;

    case 'reset-early':
      req.socket.destroy();
      return;

    case 'garbage':
      req.socket.end(Buffer.from('\x00\x01garbage not http\r\n\r\n', 'latin1'));
      return;

    case 'huge':
      await body;
      return streamHuge(res, param('bytes', 1024 * 1024));

    case 'chunked': {
      await body;
      res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
      const chunks = param('chunks', 5);
      for (let i = 0; i < chunks; i++) {
        if (i > 0 && !(await wait(20, closed.signal))) return;
        res.write(`chunk-${i}\n`);
      }
      res.end();
      return;
    }

    case 'status': {
      await body;
      const code = param('code', 500);
      res.setHeader('x-upstream-status', code);
      return json(res, code, { status: code });
    }

    default: // `headers` and any unknown name
      return json(res, 200, { method: req.method, url: req.url, headers: req.headers, bodyBytes: await body });
  }
}

/** Reads the body (counting bytes) and records the request once it is fully read or has ended. */
function readAndRecord(req: http.IncomingMessage, requests: RecordedRequest[]): Promise<number> {
  let bodyBytes = 0;
  req.on('data', (chunk: Buffer) => {
    bodyBytes += chunk.length;
  });
  return new Promise((resolve) => {
    let recorded = false;
    const record = () => {
      if (recorded) return;
      recorded = true;
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyBytes, at: Date.now() });
      resolve(bodyBytes);
    };
    req.once('end', record);
    req.once('close', record);
  });
}

async function streamHuge(res: http.ServerResponse, total: number): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
  for (let sent = 0; sent < total; ) {
    if (res.destroyed) return;
    const n = Math.min(CHUNK, total - sent);
    const flushed = res.write(n === CHUNK ? PATTERN : PATTERN.subarray(0, n));
    sent += n;
    if (!flushed) await drainOrClose(res); // respect backpressure: 50 MB+ must not pile up in memory
  }
  res.end();
}

function drainOrClose(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

/** true after `ms`, false as soon as the response is closed. */
async function wait(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await delay(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  // res.end(data) sets content-length itself (and drops the body for 204/304).
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function lastSegment(rawUrl: string | undefined): string {
  const { pathname } = new URL(rawUrl ?? '/', 'http://upstream');
  return pathname.split('/').filter(Boolean).pop() ?? '';
}
