import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/schema';
import { envelopeResponse, GatewayError, serviceUnavailable } from '../errors/envelope';
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
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-request-id': requestId,
  });
  res.end(text);
}

function sendError(res: ServerResponse, err: GatewayError, requestId: string): void {
  errorsBy(err.code, String(err.status)).inc();
  const { status, headers, body } = envelopeResponse(err, requestId);
  res.writeHead(status, headers);
  res.end(body);
}

/**
 * The admin listener (its own host and port, loopback by default; HTTPS with `admin.tls`).
 * `/healthz`, `/readyz` and `/metrics` need no token so kubelets, load balancers and Prometheus can
 * reach them; the key API under `/v1/keys` needs the admin bearer token.
 */
export function createAdminServer(readiness: Readiness, keysApi: KeysApi | undefined, tls: Config['admin']['tls'], log: Logger): http.Server {
  const server = createListener({}, tls, HANDSHAKE_TIMEOUT_MS, log);
  return server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const requestId = newRequestId();
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      sendError(res, new GatewayError('invalid_request'), requestId);
      return;
    }
    const path = url.pathname;
    if (keysApi && isKeysApiPath(path)) {
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
      void registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'x-request-id': requestId });
        res.end(text);
      });
    } else if (path === '/readyz') {
      const reason = readiness.notReadyReason();
      if (reason === null) sendJson(res, 200, { status: 'ready' }, requestId);
      else sendError(res, serviceUnavailable({ details: { reason } }), requestId);
    } else {
      sendError(res, new GatewayError('route_not_found'), requestId);
    }
  });
}
