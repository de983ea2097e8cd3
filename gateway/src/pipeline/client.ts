import { resolveClientAddress } from '../http/client-address';
import type { RequestContext } from './context';

/** Who is really calling: the socket peer, or what a trusted proxy says it forwarded. */
export function client(ctx: RequestContext): void {
  const forwardedFor = ctx.req.headers['x-forwarded-for'];
  ctx.clientAddress = resolveClientAddress(
    ctx.req.socket.remoteAddress ?? '',
    Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor,
    ctx.runtime.trustedProxies,
  );
}
