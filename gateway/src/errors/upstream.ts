import { errors as undiciErrors } from 'undici';
import { GatewayError } from './envelope';

// Upstream failures are mapped on undici's stable error codes (and Node's system codes),
// never on messages, which change between versions.
const TIMEOUTS = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);
const BAD_GATEWAY = new Set([
  'UND_ERR_SOCKET', // the upstream closed or reset the connection
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_INFO',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
const POOL_GONE = new Set(['UND_ERR_CLOSED', 'UND_ERR_DESTROYED']);

// The request never reached the upstream: safe to try another target.
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

export function isConnectFailure(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && CONNECT_FAILURES.has(code);
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Turns a failure of the upstream exchange into the envelope that describes it. */
export function mapUpstreamError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  // The upstream answered something that is not HTTP. undici leaves `code` unset for some parser
  // failures (garbage before the status line), so the error's class is the stable signal here.
  if (err instanceof undiciErrors.HTTPParserError) return new GatewayError('bad_gateway', { cause: err });
  const code = errorCode(err);
  if (code === undefined) throw err; // not a transport failure: a bug, reported as 500 upstream of here
  if (TIMEOUTS.has(code)) return new GatewayError('gateway_timeout', { cause: err });
  // llhttp parse errors (HPE_*) mean the upstream answered something that is not HTTP.
  if (BAD_GATEWAY.has(code) || code.startsWith('HPE_')) return new GatewayError('bad_gateway', { cause: err });
  if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH') {
    return new GatewayError('invalid_request', { message: 'The request body does not match its Content-Length.', cause: err });
  }
  if (POOL_GONE.has(code)) {
    return new GatewayError('service_unavailable', { headers: { 'retry-after': '1' }, cause: err });
  }
  // Any other system error on the upstream socket is still the upstream's failure.
  if (code.startsWith('E')) return new GatewayError('bad_gateway', { cause: err });
  throw err;
}
