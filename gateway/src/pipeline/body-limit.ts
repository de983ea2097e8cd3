import { GatewayError } from '../errors/envelope';
import type { RequestContext } from './context';

/** A declared body over the route's limit is refused before any work; undeclared ones are counted by the proxy. */
export function bodyLimit(ctx: RequestContext): void {
  const declared = ctx.req.headers['content-length'];
  if (declared === undefined) return;
  if (Number(declared) > ctx.route!.route.max_body_bytes) throw payloadTooLarge(ctx);
}

export function payloadTooLarge(ctx: RequestContext): GatewayError {
  const limit = ctx.route!.route.max_body_bytes;
  return new GatewayError('payload_too_large', {
    message: `The request body is larger than this route allows (${limit} bytes).`,
    details: { max_body_bytes: limit },
    // The rest of the body is never read, so the connection cannot be reused.
    headers: { connection: 'close' },
  });
}
