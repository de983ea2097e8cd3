import { catalogue, type ErrorCode } from './catalogue';

export type ErrorDetails = Record<string, string | number | boolean | null>;

/**
 * A failure that ends a request with an envelope. Steps throw it; one catch in the pipeline
 * turns it into a response. `headers` carries extras such as Retry-After.
 */
export class GatewayError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    readonly options: { message?: string; details?: ErrorDetails; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(options.message ?? catalogue[code].message, { cause: options.cause });
    this.name = 'GatewayError';
    this.status = catalogue[code].status;
  }
}

export interface Envelope {
  error: { code: ErrorCode; message: string; details?: ErrorDetails };
}

export const ENVELOPE_CONTENT_TYPE = 'application/json; charset=utf-8';

/** The public body for an error: `{"error":{"code","message","details?"}}`. */
export function toEnvelope(err: GatewayError): Envelope {
  const error: Envelope['error'] = { code: err.code, message: err.message };
  if (err.options.details) error.details = err.options.details;
  return { error };
}

/** 503 service_unavailable with Retry-After (whole seconds): the one way the gateway says "not now". */
export function serviceUnavailable(options: { message?: string; retryAfterSeconds?: number; details?: ErrorDetails; cause?: unknown } = {}): GatewayError {
  const { retryAfterSeconds = 1, ...rest } = options;
  return new GatewayError('service_unavailable', { ...rest, headers: { 'retry-after': String(retryAfterSeconds) } });
}

/**
 * 429 too_many_failed_attempts with Retry-After (whole seconds, at least 1): an address blocked by a
 * brute-force guard, for API keys (ratelimit/failed-key-guard.ts) or the admin token (admin/failed-token-guard.ts).
 */
export function tooManyFailedAttempts(msLeft: number, headers: Record<string, string> = {}): GatewayError {
  const retryAfter = Math.max(1, Math.ceil(msLeft / 1000));
  return new GatewayError('too_many_failed_attempts', {
    message: `${catalogue.too_many_failed_attempts.message} Please wait ${retryAfter} seconds before retrying.`,
    details: { retry_after: retryAfter },
    headers: { 'retry-after': String(retryAfter), ...headers },
  });
}

/** Anything thrown that is not a GatewayError is a bug: a 500 that names only the request id. */
export function asGatewayError(err: unknown, requestId: string): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('internal_error', { details: { request_id: requestId }, cause: err });
}

/**
 * Status, headers and body of an envelope response, for node:http or a raw socket. Every envelope
 * sent is built here; the writers that send them count them (pipeline/answer.ts, admin/server.ts).
 */
export function envelopeResponse(err: GatewayError, requestId: string) {
  const body = JSON.stringify(toEnvelope(err));
  const headers: Record<string, string> = {
    'content-type': ENVELOPE_CONTENT_TYPE,
    'content-length': String(Buffer.byteLength(body)),
    'x-request-id': requestId,
    'cache-control': 'no-store',
    ...err.options.headers,
  };
  return { status: err.status, headers, body };
}
