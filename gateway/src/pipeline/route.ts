import { GatewayError } from '../errors/envelope';
import { normaliseTarget } from '../routing/path';
import type { RequestContext } from './context';

/** Normalises the path and finds the most specific route for it and the method. */
export function route(ctx: RequestContext): void {
  const { path, query } = normaliseTarget(ctx.req.url ?? '/');
  ctx.path = path;
  ctx.query = query;
  const matched = ctx.runtime.routes.match(ctx.req.method ?? 'GET', path);
  if (!matched) throw new GatewayError('route_not_found');
  ctx.route = matched;
}
