import { GatewayError } from '../errors/envelope';
import type { RequestContext } from './context';

/** What a route that lists no methods answers preflights with (and what metrics expect of it). */
export const DEFAULT_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** A browser's CORS preflight: OPTIONS with the method it wants to use. */
export function isPreflight(ctx: RequestContext): boolean {
  return ctx.req.method === 'OPTIONS' && ctx.req.headers.origin !== undefined && ctx.req.headers['access-control-request-method'] !== undefined;
}

/**
 * Per-route CORS. Preflights are answered here, without a key (browsers send none). Other requests
 * from an allowed origin get the CORS headers on whatever answer they end with, proxied or error.
 */
export function cors(ctx: RequestContext): void {
  const policy = ctx.route!.route.cors;
  const origin = ctx.req.headers.origin;
  if (!policy || origin === undefined) return;
  const anyOrigin = policy.allow_origins.includes('*');
  if (!anyOrigin && !policy.allow_origins.includes(origin)) {
    if (isPreflight(ctx)) throw new GatewayError('forbidden', { message: 'This origin is not allowed to call this route.' });
    return; // no CORS headers: the browser keeps the answer from the page
  }

  const headers = ctx.responseHeaders;
  // With credentials, "*" is not allowed by browsers: echo the origin instead.
  headers['access-control-allow-origin'] = anyOrigin && !policy.allow_credentials ? '*' : origin;
  headers.vary = 'Origin';
  if (policy.allow_credentials) headers['access-control-allow-credentials'] = 'true';
  if (policy.expose_headers.length > 0) headers['access-control-expose-headers'] = policy.expose_headers.join(', ');
  if (!isPreflight(ctx) || ctx.reply.kind !== 'http') return;

  const methods = policy.allow_methods ?? ctx.route!.route.match.methods ?? DEFAULT_METHODS;
  ctx.reply.res.writeHead(204, {
    ...headers,
    'access-control-allow-methods': methods.join(', '),
    'access-control-allow-headers': policy.allow_headers.join(', '),
    'access-control-max-age': String(Math.floor(policy.max_age / 1000)),
    'x-request-id': ctx.requestId,
  });
  ctx.reply.res.end();
  ctx.status = 204;
  ctx.handled = true;
}
