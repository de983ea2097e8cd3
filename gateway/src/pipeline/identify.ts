import { GatewayError } from '../errors/envelope';
import type { RequestContext } from './context';

// Longer than any key we issue or accept for import: not worth a store lookup.
const MAX_KEY_LENGTH = 256;

/** Reads the API key from `x-api-key`. */
export function identify(ctx: RequestContext): void {
  const key = ctx.req.headers['x-api-key'];
  if (key === undefined || key === '') throw new GatewayError('missing_api_key');
  if (Array.isArray(key) || key.length > MAX_KEY_LENGTH) throw new GatewayError('invalid_api_key');
  ctx.apiKey = key;
}
