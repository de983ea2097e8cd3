import { envelopeResponse, type GatewayError } from '../errors/envelope';
import { lingerOnClose } from '../http/lingering-close';
import { endSocketWithEnvelope } from '../http/raw-response';
import type { RequestContext } from './context';

/**
 * Sends the envelope for `err`, on a normal response or on the raw socket of an upgrade. `linger`:
 * whether the rest of an unread body is worth reading before closing (not after a framing refusal,
 * where what follows is not a body we could tell apart from the next request).
 */
export function respondError(ctx: RequestContext, err: GatewayError, linger = true): void {
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
