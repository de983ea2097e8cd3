import { GatewayError } from '../errors/envelope';

// Normalising the request target is what keeps `/v1/users/../admin` from reaching `/v1/admin`'s
// upstream through `/v1/users`' rules: routes are matched, and upstreams addressed, on this form only.

// Encoded separators and NUL would let a path mean one thing to us and another to the upstream.
const FORBIDDEN_ENCODINGS = /%(2f|5c|00)/i;
// Characters a path segment may carry unencoded (RFC 3986 pchar minus unreserved, which encodeURIComponent keeps).
const PCHAR_DECODE = /%(21|24|26|27|28|29|2A|2B|2C|3B|3D|3A|40)/g;

function invalid(message: string): GatewayError {
  return new GatewayError('invalid_request', { message });
}

function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(PCHAR_DECODE, (escaped) => decodeURIComponent(escaped));
}

/**
 * Splits a request target into a normalised path and the raw query: decodes each segment once,
 * resolves `.` and `..` (never above the root), folds empty segments (`//`), and re-encodes.
 * Absolute-form targets (`http://host/path`) are reduced to their path.
 */
export function normaliseTarget(target: string): { path: string; query: string } {
  let rest = target;
  if (!rest.startsWith('/')) {
    if (!/^https?:\/\//i.test(rest)) throw invalid('The request target must be a path.');
    const afterScheme = rest.indexOf('/', rest.indexOf('//') + 2);
    rest = afterScheme === -1 ? '/' : rest.slice(afterScheme);
  }
  const hash = rest.indexOf('#');
  if (hash !== -1) rest = rest.slice(0, hash);
  const questionMark = rest.indexOf('?');
  const rawPath = questionMark === -1 ? rest : rest.slice(0, questionMark);
  const query = questionMark === -1 ? '' : rest.slice(questionMark);

  if (FORBIDDEN_ENCODINGS.test(rawPath)) throw invalid('Encoded "/", "\\" or NUL characters are not allowed in the path.');
  if (rawPath.includes('\\')) throw invalid('Backslashes are not allowed in the path.');

  const segments: string[] = [];
  const rawSegments = rawPath.split('/');
  for (const raw of rawSegments) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      throw invalid('The path contains an invalid percent-encoding.');
    }
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  const last = rawSegments[rawSegments.length - 1];
  const trailingSlash = segments.length > 0 && (last === '' || last === '.' || last === '..');
  const path = '/' + segments.map(encodeSegment).join('/') + (trailingSlash ? '/' : '');
  return { path, query };
}
