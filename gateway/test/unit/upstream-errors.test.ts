import { errors } from 'undici';
import { GatewayError } from '../../src/errors/envelope';
import { isClientFault, isConnectFailure, isKnownUpstreamFailure, mapUpstreamError } from '../../src/errors/upstream';

const withCode = (code: string, message = `failure ${code}`) => Object.assign(new Error(message), { code });

/** A short test title for a failure: its class and code, not its stack. */
function label(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return code === undefined ? err.name : `${err.name} ${String(code)}`;
}
const labelled = <T>(rows: T[]) => rows.map((err) => [label(err), err] as const);

/** One instance of an undici error class, whatever its constructor's shape (some destructure a third argument). */
function instantiate(ErrorClass: new (...args: any[]) => Error): Error {
  return new ErrorClass('test failure', undefined, {});
}

// Every class undici exports, so a class added by a future undici is covered without editing this list.
/** An HTTPParserError as undici raises it, with the llhttp code its typings leave out. */
function instantiateParserError(llhttpCode: string): Error {
  const ParserError = errors.HTTPParserError as unknown as new (message: string, code: string) => Error;
  return new ParserError('Response does not match the HTTP/1.1 protocol', llhttpCode);
}

const undiciErrorClasses = Object.entries(errors).filter(([, value]) => typeof value === 'function') as [string, new (...args: any[]) => Error][];

// Node's system and TLS codes the gateway meets on an upstream socket, plus made-up and codeless failures.
const nodeFailures: [string, unknown][] = [
  ...['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EPROTO', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'].map(
    (code): [string, unknown] => [code, withCode(code)],
  ),
  ...[
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'SELF_SIGNED_CERT_IN_CHAIN',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    'CERT_HAS_EXPIRED',
    'CERT_NOT_YET_VALID',
    'ERR_TLS_CERT_ALTNAME_INVALID',
    'ERR_SSL_WRONG_VERSION_NUMBER',
    'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  ].map((code): [string, unknown] => [code, withCode(code)]),
  ['made-up ESOMETHING', withCode('ESOMETHING')],
  ['made-up UND_ERR_FUTURE', withCode('UND_ERR_FUTURE')],
  ['an Error without code', new Error('boom')],
  ['a TypeError', new TypeError('x is undefined')],
  ['a numeric code', Object.assign(new Error('odd'), { code: 42 })],
  ['null', null],
  ['undefined', undefined],
  ['a string', 'not an error'],
];

const ALLOWED_STATUSES = [400, 502, 503, 504];

describe('every transport failure maps to an envelope, never a 500', () => {
  it.each(undiciErrorClasses)('undici %s', (_name, ErrorClass) => {
    const err = instantiate(ErrorClass);
    let mapped: GatewayError | undefined;
    expect(() => (mapped = mapUpstreamError(err))).not.toThrow();
    expect(mapped).toBeInstanceOf(GatewayError);
    expect(ALLOWED_STATUSES).toContain(mapped!.status);
    expect(() => isConnectFailure(err)).not.toThrow();
    expect(() => isClientFault(err)).not.toThrow();
  });

  // Fails when an undici upgrade adds a code: map it deliberately in src/errors/upstream.ts.
  it.each(undiciErrorClasses)('undici %s is listed in the mapping table, not left to the default', (_name, ErrorClass) => {
    expect(isKnownUpstreamFailure(instantiate(ErrorClass))).toBe(true);
  });

  it.each(nodeFailures)('%s', (_name, err) => {
    let mapped: GatewayError | undefined;
    expect(() => (mapped = mapUpstreamError(err))).not.toThrow();
    expect(ALLOWED_STATUSES).toContain(mapped!.status);
  });
});

describe('mapUpstreamError maps on error codes, not messages', () => {
  it.each([
    // 504: the upstream was too slow
    [new errors.ConnectTimeoutError(), 'gateway_timeout'],
    [new errors.HeadersTimeoutError(), 'gateway_timeout'],
    [new errors.BodyTimeoutError(), 'gateway_timeout'],
    [withCode('ETIMEDOUT'), 'gateway_timeout'],
    // 502: the upstream's fault
    [new errors.SocketError('other side closed'), 'bad_gateway'],
    [new errors.HeadersOverflowError(), 'bad_gateway'],
    [new errors.ResponseContentLengthMismatchError(), 'bad_gateway'],
    [new errors.ResponseExceededMaxSizeError(), 'bad_gateway'],
    [new errors.InformationalError('reset'), 'bad_gateway'],
    [new errors.UndiciError('generic'), 'bad_gateway'],
    [new errors.SecureProxyConnectionError(withCode('DEPTH_ZERO_SELF_SIGNED_CERT')), 'bad_gateway'],
    [new errors.Socks5ProxyError('refused', 'UND_ERR_SOCKS5_REPLY_5'), 'bad_gateway'],
    [withCode('ECONNREFUSED'), 'bad_gateway'],
    [withCode('ECONNRESET'), 'bad_gateway'],
    [withCode('EPIPE'), 'bad_gateway'],
    [withCode('HPE_INVALID_CONSTANT', 'Response does not match the HTTP/1.1 protocol'), 'bad_gateway'],
    [new errors.HTTPParserError('Response does not match the HTTP/1.1 protocol'), 'bad_gateway'],
    [instantiateParserError('INVALID_STATUS'), 'bad_gateway'],
    // TLS: the upstream's certificate or TLS set-up
    [withCode('DEPTH_ZERO_SELF_SIGNED_CERT'), 'bad_gateway'],
    [withCode('SELF_SIGNED_CERT_IN_CHAIN'), 'bad_gateway'],
    [withCode('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'bad_gateway'],
    [withCode('CERT_HAS_EXPIRED'), 'bad_gateway'],
    [withCode('ERR_TLS_CERT_ALTNAME_INVALID'), 'bad_gateway'],
    [withCode('ERR_SSL_WRONG_VERSION_NUMBER'), 'bad_gateway'],
    [withCode('EPROTO'), 'bad_gateway'],
    // unknown: still the upstream's, never a 500
    [withCode('ESOMETHING'), 'bad_gateway'],
    [withCode('UND_ERR_FUTURE'), 'bad_gateway'],
    [new Error('no code'), 'bad_gateway'],
    [new TypeError('x is undefined'), 'bad_gateway'],
    // 400: the client's request
    [new errors.RequestContentLengthMismatchError(), 'invalid_request'],
    [new errors.NotSupportedError('expect header not supported'), 'invalid_request'],
    [new errors.InvalidArgumentError('invalid x-a header'), 'invalid_request'],
    // 503: our own pool went away (reload, shutdown)
    [new errors.ClientDestroyedError(), 'service_unavailable'],
    [new errors.ClientClosedError(), 'service_unavailable'],
  ].map(([err, code]) => [label(err), code, err] as const))('%s → %s', (_label, code, err) => {
    expect(mapUpstreamError(err).code).toBe(code);
  });

  it('a closed pool answers 503 with Retry-After: 1', () => {
    expect(mapUpstreamError(new errors.ClientDestroyedError()).options.headers).toEqual({ 'retry-after': '1' });
  });

  it('passes a GatewayError through unchanged', () => {
    const err = new GatewayError('payload_too_large', { details: { max_body_bytes: 10 } });
    expect(mapUpstreamError(err)).toBe(err);
  });

  it('keeps the original failure as the cause, for the log', () => {
    const err = new errors.HeadersOverflowError();
    expect(mapUpstreamError(err).cause).toBe(err);
  });

  it('decides on the code, whatever the message says', () => {
    expect(mapUpstreamError(withCode('ECONNRESET', 'Headers Timeout Error')).code).toBe('bad_gateway');
    expect(mapUpstreamError(withCode('UND_ERR_HEADERS_TIMEOUT', 'socket hang up')).code).toBe('gateway_timeout');
  });
});

describe('isClientFault: what must not count against the upstream', () => {
  it.each(labelled([new errors.RequestContentLengthMismatchError(), new errors.NotSupportedError(), new errors.InvalidArgumentError()]))('%s is the client\'s', (_label, err) => {
    expect(isClientFault(err)).toBe(true);
    expect(isClientFault(mapUpstreamError(err))).toBe(true); // the mapped error says the same
  });

  it.each(labelled([
    new errors.HeadersOverflowError(),
    new errors.SocketError('closed'),
    new errors.HeadersTimeoutError(),
    new errors.HTTPParserError('garbage'),
    new errors.ClientDestroyedError(),
    withCode('DEPTH_ZERO_SELF_SIGNED_CERT'),
    withCode('ECONNRESET'),
    new TypeError('x'),
  ]))('%s is not', (_label, err) => {
    expect(isClientFault(err)).toBe(false);
  });
});

describe('isConnectFailure: the request never reached the upstream, another target may have it', () => {
  it.each([
    'ECONNREFUSED',
    'UND_ERR_CONNECT_TIMEOUT',
    'ENOTFOUND',
    'EAI_AGAIN',
    'EHOSTUNREACH',
    'ENETUNREACH',
    // a TLS handshake failure is a connect failure
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'SELF_SIGNED_CERT_IN_CHAIN',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'CERT_HAS_EXPIRED',
    'ERR_TLS_CERT_ALTNAME_INVALID',
    'ERR_SSL_WRONG_VERSION_NUMBER',
    'EPROTO',
    'UND_ERR_PRX_TLS',
    'UND_ERR_SOCKS5_AUTH_FAILED',
  ])('%s', (code) => {
    expect(isConnectFailure(withCode(code))).toBe(true);
  });

  it.each([
    'ECONNRESET',
    'EPIPE',
    'ETIMEDOUT',
    'UND_ERR_SOCKET',
    'UND_ERR_HEADERS_OVERFLOW',
    'UND_ERR_HEADERS_TIMEOUT',
    'UND_ERR_BODY_TIMEOUT',
    'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
    'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
    'UND_ERR_DESTROYED',
    'HPE_INVALID_CONSTANT',
    'ESOMETHING',
  ])('not %s (the request may have reached the upstream, or was refused here)', (code) => {
    expect(isConnectFailure(withCode(code))).toBe(false);
  });

  it('not an error without a code, nor a GatewayError', () => {
    expect(isConnectFailure(new Error('x'))).toBe(false);
    expect(isConnectFailure(new GatewayError('bad_gateway'))).toBe(false);
    expect(isConnectFailure(null)).toBe(false);
  });
});

describe('isKnownUpstreamFailure: what to log as possibly ours', () => {
  it.each(labelled([withCode('ESOMETHING'), withCode('UND_ERR_FUTURE'), new Error('x'), new TypeError('x'), null]))('%s is unknown', (_label, err) => {
    expect(isKnownUpstreamFailure(err)).toBe(false);
  });

  it.each(labelled([withCode('ECONNRESET'), withCode('CERT_HAS_EXPIRED'), withCode('ERR_SSL_DECRYPTION_FAILED'), new errors.HTTPParserError('x')]))('%s is known', (_label, err) => {
    expect(isKnownUpstreamFailure(err)).toBe(true);
  });
});
