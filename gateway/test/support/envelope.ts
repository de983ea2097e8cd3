import { catalogue } from '../../src/errors/catalogue';

/**
 * What is wrong with an error answer (undefined: nothing): it must be the seed's envelope, JSON with a
 * request id, carrying the catalogue's status for its code. `body` undefined: a HEAD answer (no body).
 */
export function envelopeProblem(status: number, headers: Record<string, string | string[] | undefined>, body: string | undefined): string | undefined {
  if (status < 400) return undefined;
  if (headers['content-type'] !== 'application/json; charset=utf-8') return `${status} with content-type ${headers['content-type'] ?? '(none)'}`;
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(String(headers['x-request-id'] ?? ''))) return `${status} without a sane x-request-id`;
  if (body === undefined) return undefined;
  let parsed: any;
  try {
    parsed = JSON.parse(body);
  } catch {
    return `${status} body is not JSON: ${JSON.stringify(body.slice(0, 80))}`;
  }
  const error = parsed?.error;
  if (typeof parsed !== 'object' || Object.keys(parsed).join() !== 'error' || typeof error !== 'object' || error === null) return `${status} body is not an envelope`;
  const keys = Object.keys(error).join();
  if (keys !== 'code,message' && keys !== 'code,message,details') return `${status} envelope has fields ${keys}`;
  if (typeof error.message !== 'string' || (error.details !== undefined && (typeof error.details !== 'object' || error.details === null))) {
    return `${status} envelope fields have the wrong types`;
  }
  const entry = (catalogue as Record<string, { status: number }>)[error.code];
  if (!entry) return `${status} with unknown code ${error.code}`;
  if (entry.status !== status) return `code ${error.code} sent with ${status}, the catalogue says ${entry.status}`;
  return undefined;
}
