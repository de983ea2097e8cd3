import { requestClientAddress } from '../http/client-address';
import type { RequestContext } from './context';

/** Who is really calling: the socket peer, or what a trusted proxy says it forwarded. */
export function client(ctx: RequestContext): void {
  ctx.clientAddress = requestClientAddress(ctx.req, ctx.runtime.trustedProxies);
}
