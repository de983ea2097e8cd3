import { GatewayError } from '../errors/envelope';
import { keysUnknownTier } from '../metrics/registry';
import type { RequestContext } from './context';

/**
 * The key's own scopes if set, else its tier's. Own scopes never reach beyond the tier's (a tier may
 * have shrunk since the key was made). "*" grants every scope.
 */
export function effectiveScopes(keyScopes: readonly string[] | undefined, tierScopes: readonly string[]): readonly string[] {
  if (!keyScopes) return tierScopes;
  if (tierScopes.includes('*')) return keyScopes;
  if (keyScopes.includes('*')) return tierScopes;
  return keyScopes.filter((scope) => tierScopes.includes(scope));
}

/** A route needs every scope it lists, from keyed callers; anonymous ones have no scopes to check. */
export function authorize(ctx: RequestContext): void {
  if (ctx.anonymous) return;
  const consumer = ctx.consumer!;
  const tier = ctx.runtime.config.tiers[consumer.tier];
  if (!tier) {
    keysUnknownTier.inc(); // the tier left the config after the key was made: operators must move the key
    throw new GatewayError('forbidden', { message: 'The tier of this API key is no longer configured on this gateway.' });
  }
  const granted = effectiveScopes(consumer.scopes, tier.scopes);
  if (granted.includes('*')) return;
  const required = ctx.route!.route.scopes;
  if (required.some((scope) => !granted.includes(scope))) {
    throw new GatewayError('forbidden', { details: { required_scopes: required.join(' ') } });
  }
}
