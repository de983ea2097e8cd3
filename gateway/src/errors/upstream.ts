import { errors as undiciErrors } from 'undici';
import { GatewayError, serviceUnavailable } from './envelope';

// How a failed upstream exchange is answered. Every code undici 7 defines (lib/core/errors.js) is
// listed once below, with Node's system and TLS codes. Mapped on codes (and on undici's class where
// it sets no code), never on messages, which change between versions. A failure in no list is still
// the upstream's: 502, never a 500. The envelope codes come from catalogue.ts.

/** 504 gateway_timeout: the upstream did not answer in time. */
const TIMEOUT = new Set([
  'UND_ERR_CONNECT_TIMEOUT', // no connection (TCP + TLS) within connectTimeout
  'UND_ERR_HEADERS_TIMEOUT', // connected, no response head within headersTimeout
  'UND_ERR_BODY_TIMEOUT', // the response body stalled longer than bodyTimeout
  'ETIMEDOUT', // the kernel gave up on the connection
]);

/**
 * 400 invalid_request: undici refused the client's request, so the upstream is not to blame and its
 * breaker must not count it (else one client could eject a healthy target with crafted requests).
 */
const CLIENT_FAULT = new Set([
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', // the client's body did not match its Content-Length
  'UND_ERR_NOT_SUPPORTED', // a request undici will not send, e.g. one with an Expect header
  // The only per-request arguments the proxy hands undici are the client's method, path and
  // headers; the gateway's own options are fixed or validated when the config loads. So an invalid
  // argument is a client header or path undici is stricter about than node's parser.
  'UND_ERR_INVALID_ARG',
]);

/** 503 service_unavailable (Retry-After: 1): our pool was closed by a reload or shutdown mid-request. */
const POOL_GONE = new Set(['UND_ERR_CLOSED', 'UND_ERR_DESTROYED']);

/**
 * 502 bad_gateway: the upstream's fault. Listed so each code is a decision (isKnownUpstreamFailure);
 * a code in no list gets 502 too, including undici codes added after this list was written.
 */
const BAD_GATEWAY = new Set([
  'UND_ERR', // undici's base class: a failure with no more precise code
  'UND_ERR_SOCKET', // the upstream closed or reset the connection
  'UND_ERR_INFO', // undici tore the socket down (reset, idle timeout) under a request
  'UND_ERR_HEADERS_OVERFLOW', // response head over the 16 KB max header size
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', // response body shorter or longer than its Content-Length
  'UND_ERR_RES_EXCEEDED_MAX_SIZE', // response over maxResponseSize
  'UND_ERR_ABORT', // aborted by undici itself; the client's and our timeout's aborts are handled before mapping
  'UND_ERR_ABORTED',
  // Raised only by undici features the gateway does not use (stream/pipeline, BalancedPool,
  // retry and response-error interceptors, Agent origin limit, WebSocket client): should one
  // appear, it happened on the way to the upstream.
  'UND_ERR_INVALID_RETURN_VALUE',
  'UND_ERR_BPL_MISSING_UPSTREAM',
  'UND_ERR_REQ_RETRY',
  'UND_ERR_RESPONSE',
  'UND_ERR_MAX_ORIGINS_REACHED',
  'UND_ERR_WS_MESSAGE_SIZE_EXCEEDED',
  // Node system errors on the upstream socket.
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
// Also 502: HTTPParserError (garbage instead of HTTP; code HPE_* or none), TLS failures (below),
// UND_ERR_PRX_TLS and UND_ERR_SOCKS5* (proxy hand-shakes, connect failures below).

/** Certificate verification failures (OpenSSL's X509_V_ERR_* as node names them): always during the handshake. */
const CERTIFICATE = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'OUT_OF_MEM',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
]);

/**
 * A TLS failure: a certificate refused, node's ERR_TLS_* (e.g. ERR_TLS_CERT_ALTNAME_INVALID),
 * OpenSSL's ERR_SSL_* (e.g. ERR_SSL_WRONG_VERSION_NUMBER: the target does not speak TLS) or EPROTO.
 * Nearly all happen in the handshake, before a byte of the request is sent; the rare mid-stream
 * one (a renegotiation refused) can only lead to a repeat of a bodiless idempotent request.
 */
function isTlsFailure(code: string): boolean {
  return CERTIFICATE.has(code) || code === 'EPROTO' || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_');
}

/** The request never reached the upstream: safe to try another target (the proxy retries only bodiless idempotent requests). */
const CONNECT_FAILURES = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'UND_ERR_PRX_TLS', // the TLS hand-shake with a proxy failed
]);

export function isConnectFailure(err: unknown): boolean {
  if (err instanceof GatewayError) return false;
  const code = errorCode(err);
  if (code === undefined) return false;
  return CONNECT_FAILURES.has(code) || isTlsFailure(code) || code.startsWith('UND_ERR_SOCKS5');
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Turns a failure of the upstream exchange into the envelope that describes it. Never throws. */
export function mapUpstreamError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = errorCode(err);
  // HTTPParserError: the upstream answered something that is not HTTP. Its code (HPE_*) is unset
  // for some parser failures, so the class is the signal; it is the upstream's fault either way.
  if (err instanceof undiciErrors.HTTPParserError || code === undefined) return new GatewayError('bad_gateway', { cause: err });
  if (TIMEOUT.has(code)) return new GatewayError('gateway_timeout', { cause: err });
  if (CLIENT_FAULT.has(code)) return clientFault(code, err);
  if (POOL_GONE.has(code)) return serviceUnavailable({ cause: err });
  // BAD_GATEWAY, TLS failures, HPE_*, proxy hand-shakes, and codes in no list at all.
  return new GatewayError('bad_gateway', { cause: err });
}

/**
 * Whether the failure is one of the listed ones. An unlisted one still maps to 502, but may be a
 * bug of ours rather than the upstream's: worth a log line, and a look at this table.
 */
export function isKnownUpstreamFailure(err: unknown): boolean {
  if (err instanceof GatewayError || err instanceof undiciErrors.HTTPParserError) return true;
  const code = errorCode(err);
  if (code === undefined) return false;
  return (
    [TIMEOUT, CLIENT_FAULT, POOL_GONE, BAD_GATEWAY].some((table) => table.has(code)) ||
    isTlsFailure(code) ||
    isConnectFailure(err) ||
    code.startsWith('HPE_')
  );
}

function clientFault(code: string, err: unknown): GatewayError {
  const message =
    code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'
      ? 'The request body does not match its Content-Length.'
      : 'A header or the path of this request cannot be forwarded to the upstream.';
  return new GatewayError('invalid_request', { message, cause: err });
}

/**
 * Whether the failure is the client's doing (a 4xx): it must not count against the target's
 * breaker. Takes the raw error or its mapped GatewayError. A 503 from a closed pool is neither
 * side's fault, and a 502 or 504 is the upstream's.
 */
export function isClientFault(err: unknown): boolean {
  return mapUpstreamError(err).status < 500;
}
