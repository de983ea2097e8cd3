import type { Readable } from 'node:stream';

// RFC 9112 §6.3: an answer to HEAD, and a 1xx, 204 or 304, ends with its head, whatever the upstream
// declared or sent after it. Bytes it sent anyway belong to no message: undici then drops that
// connection (a Content-Length it never got, or bytes it cannot parse as the next answer), so they
// can never be read as the answer to the next request.

/** Whether an answer with `status` has no body, whatever the method. */
function statusHasNoBody(status: number): boolean {
  return status < 200 || status === 204 || status === 304;
}

/** Whether the answer to `method` with `status` has no body. */
export function answersWithoutBody(method: string, status: number): boolean {
  return method === 'HEAD' || statusHasNoBody(status);
}

/**
 * The head of a bodiless answer: a 1xx or 204 must not carry Content-Length (RFC 9110 §8.6), and on
 * a 304 clients such as undici wait for the body it announces. A HEAD answer keeps it (the GET's size).
 */
export function bodilessHeaders<T extends Record<string, unknown>>(method: string, status: number, headers: T): T {
  if (method === 'HEAD' && !statusHasNoBody(status)) return headers;
  const { 'content-length': _dropped, ...rest } = headers;
  return rest as T;
}

/** Lets undici finish (or discard) the exchange without relaying anything; `onExtraBytes` hears of a body that was announced. */
export function discardBody(body: Readable, onExtraBytes: (err: Error) => void): void {
  body.once('error', onExtraBytes);
  body.resume();
}
