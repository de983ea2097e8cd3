// Admin inputs must be valid Unicode text. JSON can spell a lone UTF-16 surrogate (`"\ud800"`) and a
// body can carry bytes that are not UTF-8; either way the text would be stored as something other than
// what was sent (Redis and the JSON encoder replace what they cannot write), so both are refused.

export const UNICODE_REQUIREMENT = 'valid Unicode text (no lone UTF-16 surrogates)';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The text of `bytes`, or undefined when they are not valid UTF-8 (rather than replacing them with U+FFFD). */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Where in a parsed JSON value the first string (or object key) that is not valid Unicode is: its
 * path, [] for the whole value (or for a bad key at the top), undefined when there is none. A bad
 * key is reported at its parent, so the path never repeats it.
 */
export function malformedTextPath(value: unknown, path: (string | number)[] = []): (string | number)[] | undefined {
  if (typeof value === 'string') return value.isWellFormed() ? undefined : path;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = malformedTextPath(value[i], [...path, i]);
      if (found) return found;
    }
    return undefined;
  }
  if (typeof value === 'object' && value !== null) {
    for (const [key, child] of Object.entries(value)) {
      if (!key.isWellFormed()) return path;
      const found = malformedTextPath(child, [...path, key]);
      if (found) return found;
    }
  }
  return undefined;
}
