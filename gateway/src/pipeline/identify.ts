import { GatewayError } from '../errors/envelope';
import { anonymousSubject } from '../ratelimit/anonymous';
import type { RequestContext } from './context';

// Longer than any key we issue or accept for import: not worth a store lookup.
const MAX_KEY_LENGTH = 256;

/**
 * Reads the API key from `x-api-key`. On an auth: none route the caller is anonymous whatever it
 * sends (a key is never looked up); on an auth: optional route, only when it sends no key.
 */
export function identify(ctx: RequestContext): void {
  const auth = ctx.route!.route.auth;
  if (auth === 'none') return identifyAnonymous(ctx);
  const key = ctx.req.headers['x-api-key'];
  if (key === undefined || key === '') {
    if (auth === 'optional') return identifyAnonymous(ctx);
    throw new GatewayError('missing_api_key');
  }
  if (Array.isArray(key) || key.length > MAX_KEY_LENGTH) throw new GatewayError('invalid_api_key');
  ctx.apiKey = key;
}

function identifyAnonymous(ctx: RequestContext): void {
  // config check makes sure a route that is not auth: required has an anonymous_tier to count in
  ctx.anonymous = { tier: ctx.runtime.config.anonymous_tier!, id: anonymousSubject(ctx.clientAddress) };
}
