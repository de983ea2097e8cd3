import { GatewayError } from '../errors/envelope';

/**
 * The envelope for a request node's parser refused (its clientError), on either listener: headers
 * over the size cap → 431, headers not all sent in time → 408, anything else (a bad request line, a
 * malformed header line) → 400.
 */
export function parserRefusal(err: NodeJS.ErrnoException): GatewayError {
  if (err.code === 'HPE_HEADER_OVERFLOW') return new GatewayError('headers_too_large');
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new GatewayError('request_timeout');
  return new GatewayError('invalid_request');
}
