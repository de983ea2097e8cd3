import type { Route } from '../config/schema';
import { withoutParameters } from '../http/paths';

/** A route ready for matching: methods as a set (null = any method). */
export interface CompiledRoute {
  readonly route: Route;
  readonly prefix: string;
  /** How many segments the prefix has (its `/`s): what strip_prefix removes from each path. */
  readonly prefixSegments: number;
  readonly methods: ReadonlySet<string> | null;
}

/** The methods a route that lists `methods` serves: HEAD with GET, as every HTTP server does. */
export function servedMethods(methods: readonly string[]): Set<string> {
  const served = new Set(methods);
  if (served.has('GET')) served.add('HEAD');
  return served;
}

/** Routes compiled once per config: longest prefix first, so the first match is the most specific. */
export class RouteTable {
  private readonly compiled: CompiledRoute[];

  constructor(routes: readonly Route[]) {
    this.compiled = routes
      .map((route) => {
        const methods = route.match.methods ? servedMethods(route.match.methods) : null;
        const prefix = route.match.path_prefix;
        return { route, prefix, prefixSegments: prefix.split('/').length - 1, methods };
      })
      .sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /**
   * The most specific route for a normalised path and method; a prefix matches whole segments only,
   * compared without their `;parameters`: `/admin;x/secret` is under `/admin`, as a servlet reads it.
   */
  match(method: string, path: string): CompiledRoute | undefined {
    const bare = withoutParameters(path);
    for (const candidate of this.compiled) {
      if (!prefixMatches(candidate.prefix, bare)) continue;
      if (candidate.methods === null || candidate.methods.has(method)) return candidate;
    }
    return undefined;
  }
}

function prefixMatches(prefix: string, path: string): boolean {
  if (prefix === '/') return true;
  return path === prefix || (path.startsWith(prefix) && path[prefix.length] === '/');
}

/**
 * The path the upstream sees: the prefix removed when the route asks for it. The prefix's segments
 * are removed whole, with any `;parameters` they carry in `path`.
 */
export function upstreamPath(compiled: CompiledRoute, path: string): string {
  if (!compiled.route.strip_prefix || compiled.prefix === '/') return path;
  let end = 0;
  for (let i = 0; i < compiled.prefixSegments; i++) {
    end = path.indexOf('/', end + 1);
    if (end === -1) return '/';
  }
  return path.slice(end);
}
