import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Config } from '../config/schema';
import { envelopeResponse, GatewayError, serviceUnavailable } from '../errors/envelope';
import { framingError } from '../http/framing';
import { isLingering, lingerOnClose } from '../http/lingering-close';
import { parserRefusal } from '../http/parser-refusal';
import { endSocketWithEnvelope } from '../http/raw-response';
import { requestLimits } from '../http/request-limits';
import { errorsBy, registry } from '../metrics/registry';
import { newRequestId } from '../pipeline/request-id';
import { createListener } from '../http/tls-listener';
import { isKeysApiPath, type KeysApi } from './keys-api';

// How long a client of the admin port gets for its TLS handshake.
const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface Readiness {
  /** Null when ready, else a short reason safe to show (no secrets). */
  notReadyReason(): string | null;
}

function sendJson(res: ServerResponse, status: number, body: unknown, requestId: string): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-request-id': requestId,
  });
  res.end(text);
}

/** A request whose body has not been read to its end (a refusal came first). */
function bodyUnread(req: IncomingMessage): boolean {
  return !req.complete && (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0);
}

function sendError(res: ServerResponse, err: GatewayError, requestId: string, options: { linger: boolean } = { linger: true }): void {
  if (res.headersSent) return; // already answered (its body broke while it was being read)
  errorsBy(err.code, String(err.status)).inc();
  const { status, headers, body } = envelopeResponse(err, requestId);
  // The rest of an unread body cannot be told apart from the next request: close, but read and drop
  // it for a while first, so the client reads this answer rather than a reset (lingering-close.ts).
  if (bodyUnread(res.req)) {
    headers.connection = 'close';
    if (options.linger) lingerOnClose(res.req.socket);
  }
  res.writeHead(status, headers);
  res.end(body);
}

/**
 * The admin listener (its own host and port, loopback by default; HTTPS with `admin.tls`).
 * `/healthz`, `/readyz` and `/metrics` need no token so kubelets, load balancers and Prometheus can
 * reach them; the key API under `/v1/keys` needs the admin bearer token. Requests are read under the
 * public listener's limits (listen.max_header_bytes, headers_timeout), and what node's parser refuses
 * gets the same envelopes as there. `metrics`: this process's registry, or (the primary of
 * `serve --workers N`) every worker's added up.
 */
export function createAdminServer(
  listen: Config['listen'],
  readiness: Readiness,
  keysApi: KeysApi,
  { tls, log, metrics = () => registry.metrics() }: { tls: Config['admin']['tls']; log: Logger; metrics?: () => Promise<string> },
): http.Server {
  /** Connections whose framing was refused: what follows on them is not a request. */
  const refused = new WeakSet<Duplex>();
  /** The answer in progress on each connection, for a parse error in its body. */
  const answering = new WeakMap<Duplex, ServerResponse>();

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    if (refused.has(req.socket) || isLingering(req.socket)) return; // node closes the connection after the refusal
    const requestId = newRequestId();
    answering.set(req.socket, res);
    res.once('finish', () => answering.delete(req.socket));
    const malformed = framingError(req);
    if (malformed) {
      refused.add(req.socket);
      return sendError(res, malformed, requestId, { linger: false });
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      sendError(res, new GatewayError('invalid_request'), requestId);
      return;
    }
    const path = url.pathname;
    if (isKeysApiPath(path)) {
      void keysApi(req, path, url.searchParams, requestId).then((answer) => {
        if (answer instanceof GatewayError) sendError(res, answer, requestId);
        else sendJson(res, answer.status, answer.body, requestId);
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(res, new GatewayError('route_not_found'), requestId);
      return;
    }
    if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok' }, requestId);
    } else if (path === '/metrics') {
      metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType, 'x-request-id': requestId });
          res.end(text);
        },
        // With workers, one that does not answer (it just died): no partial sums, Prometheus retries.
        () => sendError(res, serviceUnavailable({ message: 'Metrics are not available right now. Please try again shortly.' }), requestId),
      );
    } else if (path === '/readyz') {
      const reason = readiness.notReadyReason();
      if (reason === null) sendJson(res, 200, { status: 'ready' }, requestId);
      else sendError(res, serviceUnavailable({ details: { reason } }), requestId);
    } else {
      sendError(res, new GatewayError('route_not_found'), requestId);
    }
  };

  /** What node's parser refused: an envelope, on the answer in progress if its body broke, else on the raw socket. */
  const onClientError = (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (refused.has(socket) || isLingering(socket as Socket)) return;
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const inProgress = answering.get(socket);
    if (inProgress) {
      if (inProgress.headersSent) return void socket.destroy();
      refused.add(socket);
      return sendError(inProgress, new GatewayError('invalid_request', { headers: { connection: 'close' } }), newRequestId(), { linger: false });
    }
    const refusal = parserRefusal(err);
    errorsBy(refusal.code, String(refusal.status)).inc();
    endSocketWithEnvelope(socket, refusal, newRequestId());
  };

  const server = createListener(requestLimits(listen), tls, HANDSHAKE_TIMEOUT_MS, log);
  server.on('request', onRequest);
  // An expectation other than 100-continue is ignored (RFC 9110 §10.1.1 allows it), not a bare 417.
  server.on('checkExpectation', onRequest);
  server.on('clientError', onClientError);
  return server;
}
