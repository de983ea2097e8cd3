import { GatewayError, serviceUnavailable } from '../errors/envelope';
import { isUsable } from '../keys/records';
import { StoreUnavailableError } from '../redis/errors';
import type { RequestContext } from './context';

/**
 * Looks the key up (cache first). Unknown, revoked or expired → 401, counted against the client
 * address by the failed-key guard (429 once over); a store that cannot answer → 503, never 401.
 * An anonymous caller presented no key: nothing to look up, nothing for the guard to count.
 */
export async function authenticate(ctx: RequestContext): Promise<void> {
  if (ctx.anonymous) return;
  const { runtime } = ctx;
  runtime.failedKeys.checkNotBlocked(ctx.clientAddress);
  let found;
  try {
    found = await runtime.keys.find(ctx.apiKey!);
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) throw err;
    runtime.log.warn({ request_id: ctx.requestId, err: err.message }, 'key store unavailable for an uncached key');
    throw serviceUnavailable({ cause: err });
  }
  if (!found.record || !isUsable(found.record)) {
    await runtime.failedKeys.recordFailure(ctx.clientAddress);
    throw new GatewayError('invalid_api_key');
  }
  ctx.consumer = found.record;
}
