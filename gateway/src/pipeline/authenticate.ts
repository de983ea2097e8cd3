import { GatewayError, serviceUnavailable } from '../errors/envelope';
import { isUsable } from '../keys/records';
import { StoreUnavailableError } from '../redis/errors';
import type { Found } from '../keys/cache';
import type { RequestContext } from './context';

/**
 * Looks the key up (cache first). Unknown, revoked or expired → 401, counted against the client
 * address by the failed-key guard (429 once over); a store that cannot answer → 503, never 401.
 * An anonymous caller presented no key: nothing to look up, nothing for the guard to count.
 */
export function authenticate(ctx: RequestContext): void | Promise<void> {
  if (ctx.anonymous) return;
  ctx.runtime.failedKeys.checkNotBlocked(ctx.clientAddress);
  const found = ctx.runtime.keys.find(ctx.apiKey!);
  // A cached key is known at once: no promise, no turn of the microtask queue.
  if (!(found instanceof Promise)) return admit(ctx, found);
  return found.then(
    (fromStore) => admit(ctx, fromStore),
    (err) => {
      if (!(err instanceof StoreUnavailableError)) throw err;
      ctx.runtime.log.warn({ request_id: ctx.requestId, err: err.message }, 'key store unavailable for an uncached key');
      throw serviceUnavailable({ cause: err });
    },
  );
}

function admit(ctx: RequestContext, found: Found): void | Promise<void> {
  if (found.record && isUsable(found.record)) {
    ctx.consumer = found.record;
    return;
  }
  return ctx.runtime.failedKeys.recordFailure(ctx.clientAddress).then(() => {
    throw new GatewayError('invalid_api_key');
  });
}
