// Which request methods a route (or a CORS policy) may name. Methods are case-sensitive tokens
// (RFC 9110 §9.1), and the listener's HTTP parser (llhttp) refuses any method it does not know,
// with 400 before routing, so a route naming such a method could never match.
import { METHODS } from 'node:http';

/**
 * Accepted without further ado: the methods of RFC 9110 and PATCH (RFC 5789), and WebDAV's
 * (RFC 4918), all in the IANA HTTP Method Registry. CONNECT is left out on purpose: the gateway
 * answers every CONNECT with 400 itself, so a route for it could never be used.
 */
export const STANDARD_METHODS: readonly string[] = [
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'PATCH',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK',
];

/** What the listener can receive at all: Node's parser knows exactly these. */
const RECEIVABLE_METHODS: ReadonlySet<string> = new Set(METHODS);

/** RFC 9110 token characters. */
export const METHOD_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Why a method spelled like this can never match a request, or undefined. */
export function unreceivableMethod(method: string): string | undefined {
  if (method === 'CONNECT') return 'CONNECT is never routed: the gateway answers it with 400 itself';
  if (RECEIVABLE_METHODS.has(method)) return undefined;
  if (RECEIVABLE_METHODS.has(method.toUpperCase())) {
    return `methods are case-sensitive (RFC 9110): write '${method.toUpperCase()}' ('${method}' is refused by the HTTP parser)`;
  }
  return `'${method}' can never reach a route: Node's HTTP parser answers methods it does not know (http.METHODS) with 400`;
}

/** Why a route may not name this method, given the config's allow_custom_methods, or undefined. */
export function methodProblem(method: string, allowCustom: readonly string[]): string | undefined {
  const unreceivable = unreceivableMethod(method);
  if (unreceivable !== undefined) return unreceivable;
  if (STANDARD_METHODS.includes(method) || allowCustom.includes(method)) return undefined;
  return `'${method}' is not a standard HTTP method (${STANDARD_METHODS.join(', ')}); list it in allow_custom_methods to route it`;
}
