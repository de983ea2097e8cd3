import { errors } from 'undici';
import { mapUpstreamError } from '../../src/errors/upstream';

describe('mapUpstreamError maps on error codes, not messages', () => {
  it.each([
    [new errors.ConnectTimeoutError(), 'gateway_timeout'],
    [new errors.HeadersTimeoutError(), 'gateway_timeout'],
    [new errors.BodyTimeoutError(), 'gateway_timeout'],
    [new errors.SocketError('other side closed'), 'bad_gateway'],
    [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'bad_gateway'],
    [Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'bad_gateway'],
    [Object.assign(new Error('Response does not match the HTTP/1.1 protocol'), { code: 'HPE_INVALID_CONSTANT' }), 'bad_gateway'],
    [new errors.HTTPParserError('Response does not match the HTTP/1.1 protocol'), 'bad_gateway'],
    [new errors.RequestContentLengthMismatchError(), 'invalid_request'],
    [new errors.ClientDestroyedError(), 'service_unavailable'],
  ])('%s → %s', (err, code) => {
    expect(mapUpstreamError(err).code).toBe(code);
  });

  it('rethrows what is not a transport failure (a bug becomes a 500 upstream of here)', () => {
    const bug = new TypeError('x is undefined');
    expect(() => mapUpstreamError(bug)).toThrow(bug);
  });
});
