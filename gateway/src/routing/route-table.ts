import type { Route } from '../config/schema';
import { withoutParameters } from '../http/paths';

/** A route ready for matching: methods as a set (null = any method). */
export interface CompiledRoute {
  readonly route: Route;
  readonly prefix: string;
  readonly methods: ReadonlySet<string> | null;
}

/** Routes compiled once per config: longest prefix first, so the first match is the most specific. */
export class RouteTable {
  private readonly compiled: CompiledRoute[];

  constructor(routes: readonly Route[]) {
    this.compiled = routes
      .map((route) => {
        const methods = route.match.methods ? new Set(route.match.methods) : null;
        // A route that serves GET serves HEAD too, as every HTTP server does.
        if (methods?.has('GET')) methods.add('HEAD');
        return { route, prefix: route.match.path_prefix, methods };
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
  for (let slash = 0; slash !== -1; slash = compiled.prefix.indexOf('/', slash + 1)) {
    end = path.indexOf('/', end + 1);
    if (end === -1) return '/';
  }
  return path.slice(end);
}
