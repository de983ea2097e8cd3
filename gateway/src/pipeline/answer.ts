import type { Duplex } from 'node:stream';
import { envelopeResponse, type GatewayError } from '../errors/envelope';
import { lingerOnClose } from '../http/lingering-close';
import { endSocketWithEnvelope } from '../http/raw-response';
import { errorsBy } from '../metrics/registry';
import type { Runtime } from '../runtime';
import { client } from './client';
import type { RequestContext } from './context';
import { finish, record } from './finish';
import { newRequestId, requestId } from './request-id';

// The one writer of every answer the gateway makes itself on the public listener — a step's failure,
// shedding, a framing refusal, CONNECT, a request node's parser refused — so that each is counted
// (sluice_errors_total) once and logged (finish.ts) once, whichever way it came.

/**
 * Sends the envelope for `err`, on a normal response or on the raw socket of an upgrade. `linger`:
 * whether the rest of an unread body is worth reading before closing (not after a framing refusal,
 * where what follows is not a body we could tell apart from the next request).
 */
export function answerError(ctx: RequestContext, err: GatewayError, linger = true): void {
  ctx.error = err;
  errorsBy(err.code, String(err.status)).inc();
  if (ctx.reply.kind === 'upgrade') {
    ctx.status = endSocketWithEnvelope(ctx.reply.socket, err, ctx.requestId, ctx.responseHeaders);
    return;
  }

  const { status, headers, body } = envelopeResponse(err, ctx.requestId);
  const allHeaders: Record<string, string> = { ...ctx.responseHeaders, ...headers };
  ctx.status = status;

  const res = ctx.reply.res;
  if (res.headersSent) {
    // Part of another answer is already on the wire; cutting the connection is the only truthful signal.
    res.destroy();
    return;
  }
  // A body we never read would have to be drained before the connection could be reused: close
  // instead, reading and dropping the rest for a while so the client gets to read this answer.
  if (!ctx.req.complete && ctx.req.headers['content-length'] !== '0') {
    allHeaders.connection = 'close';
    if (linger) lingerOnClose(ctx.req.socket);
  }
  res.writeHead(status, allHeaders);
  res.end(body);
}

/**
 * Answers a request at once, without its steps (shedding, a framing refusal, CONNECT): its id and
 * client address, the envelope, the access-log line. Synchronous on purpose: for some framings node
 * reports a parse error right after the request event, and then the answer must already be written.
 */
export function answerNow(ctx: RequestContext, err: GatewayError, options: { linger: boolean }): void {
  requestId(ctx);
  client(ctx);
  answerError(ctx, err, options.linger);
  finish(ctx);
}

/**
 * A request node's parser refused before there was a request to speak of (a bad request line,
 * headers too large, headers too slow): the envelope on the raw socket, then closed; counted and
 * logged like any other answer.
 */
export function answerUnparsed(runtime: Runtime, socket: Duplex, err: GatewayError, parserError: string | undefined): void {
  const startedAt = performance.now();
  const id = newRequestId();
  errorsBy(err.code, String(err.status)).inc();
  const status = endSocketWithEnvelope(socket, err, id);
  const address = (socket as { remoteAddress?: string }).remoteAddress;
  record(runtime, { requestId: id, status, code: err.code, startedAt, client: address, parserError });
}
