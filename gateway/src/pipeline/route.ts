import { GatewayError } from '../errors/envelope';
import { normaliseTarget } from '../http/paths';
import type { RequestContext } from './context';
import { isPreflight } from './cors';

/** Normalises the path and finds the most specific route for it and the method. */
export function route(ctx: RequestContext): void {
  const { path, query } = normaliseTarget(ctx.req.url ?? '/');
  ctx.path = path;
  ctx.query = query;
  // A preflight asks about the method it will use: match the route for that method.
  const method = isPreflight(ctx) ? String(ctx.req.headers['access-control-request-method']).toUpperCase() : (ctx.req.method ?? 'GET');
  const matched = ctx.runtime.routes.match(method, path);
  if (!matched) throw new GatewayError('route_not_found');
  ctx.route = matched;
}
