import { GatewayError } from '../errors/envelope';

// Normalising the request target is what keeps `/v1/users/../admin` from reaching `/v1/admin`'s
// upstream through `/v1/users`' rules: routes are matched, and upstreams addressed, on this form only.

// Encoded separators, `;` and NUL would let a path mean one thing to us and another to the upstream.
const FORBIDDEN_ENCODINGS = /%(2f|5c|00|3b)/i;
// How many more times a segment is decoded when looking for a hidden dot segment (double, triple encoding).
const EXTRA_DECODE_ROUNDS = 3;
const SEPARATORS = /[/\\]/;
// Characters a path segment may carry unencoded (RFC 3986 pchar minus unreserved, which encodeURIComponent keeps).
const PCHAR_DECODE = /%(21|24|26|27|28|29|2A|2B|2C|3B|3D|3A|40)/g;

// A path whose segments hold only characters encodeSegment keeps as they are (no `%`, no `;`), none of
// them empty, `.` or `..`; a trailing `/` allowed.
const ALREADY_NORMAL = /^(?:\/(?!\.{1,2}(?:\/|$))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*\/?$/;

function invalid(message: string): GatewayError {
  return new GatewayError('invalid_request', { message });
}

function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(PCHAR_DECODE, (escaped) => decodeURIComponent(escaped));
}

/**
 * Whether a segment (decoded once, not itself `.` or `..`) reads as `.`, `..` or an empty segment to
 * a server that removes `;parameters` first (Tomcat, Jetty and Spring read `..;x` as `..`), or that
 * decodes once more (`%252e%252e`). We would forward it as a name while such an upstream climbs a
 * level: refused rather than guessed at.
 */
function hidesDotSegment(decoded: string): boolean {
  let text = decoded;
  for (let round = 0; ; round++) {
    if (readsAsDotSegment(text)) return true;
    if (round === EXTRA_DECODE_ROUNDS || !text.includes('%')) return false;
    try {
      text = decodeURIComponent(text);
    } catch {
      return false; // not decodable again: a literal `%`, which no server reads as a dot
    }
  }
}

/** Whether any part of `text` (decoded again, it may hold separators) is `.`, `..` or empty once `;parameters` go. */
function readsAsDotSegment(text: string): boolean {
  for (const part of text.split(SEPARATORS)) {
    const semicolon = part.indexOf(';');
    const name = semicolon === -1 ? part : part.slice(0, semicolon);
    if (name === '.' || name === '..' || (name === '' && semicolon !== -1)) return true;
  }
  return false;
}

/**
 * A normalised path with each segment's `;parameters` removed (`/admin;x/secret` → `/admin/secret`):
 * the form routes are matched on, as servlet containers would read it. One pass, no regex.
 */
export function withoutParameters(path: string): string {
  let semicolon = path.indexOf(';');
  if (semicolon === -1) return path;
  let bare = '';
  let from = 0;
  while (semicolon !== -1) {
    bare += path.slice(from, semicolon);
    from = path.indexOf('/', semicolon);
    if (from === -1) return bare;
    semicolon = path.indexOf(';', from);
  }
  return bare + path.slice(from);
}

/**
 * Splits a request target into a normalised path and the raw query: decodes each segment once,
 * resolves `.` and `..` (never above the root), folds empty segments (`//`), and re-encodes.
 * `;parameters` are kept; a segment that is a dot segment only once they are removed is refused.
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

  // Most paths are already normal: segments of characters that stand for themselves, none of them
  // empty, `.` or `..`. Such a path is its own normal form, with nothing to decode or check.
  if (ALREADY_NORMAL.test(rawPath)) return { path: rawPath, query };

  if (FORBIDDEN_ENCODINGS.test(rawPath)) throw invalid('Encoded "/", "\\", ";" or NUL characters are not allowed in the path.');
  if (rawPath.includes('\\')) throw invalid('Backslashes are not allowed in the path.');

  // The common path has neither: no segment can hide a dot segment, and nothing more is checked.
  const mayHideDots = rawPath.includes(';') || rawPath.includes('%');
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
    else if (mayHideDots && hidesDotSegment(segment)) {
      throw invalid('A path segment that reads as "." or ".." (or as nothing) once its ";" parameters are removed or it is decoded again is not allowed.');
    } else segments.push(segment);
  }
  const last = rawSegments[rawSegments.length - 1];
  const trailingSlash = segments.length > 0 && (last === '' || last === '.' || last === '..');
  const path = '/' + segments.map(encodeSegment).join('/') + (trailingSlash ? '/' : '');
  return { path, query };
}
