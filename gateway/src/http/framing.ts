import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors/envelope';

// What node's parser lets through but a proxy must refuse (RFC 9112 §3.2, §6.1): a body framing that
// a proxy in front of us or the upstream could read differently (request smuggling), and a Host
// header that is missing or repeated. Node rejects Content-Length with Transfer-Encoding and
// repeated Content-Lengths itself.

function invalid(message: string): GatewayError {
  // The body's end is unknown, so nothing after this request on the connection can be trusted.
  return new GatewayError('invalid_request', { message, headers: { connection: 'close' } });
}

/** Why this request must be refused before anything else looks at it, or undefined. */
export function framingError(req: IncomingMessage): GatewayError | undefined {
  const transferEncoding = req.headers['transfer-encoding'];
  if (transferEncoding !== undefined) {
    // HTTP/1.0 has no transfer codings; a 1.0 proxy in front of us would frame the body by Content-Length or close.
    if (req.httpVersion === '1.0') return invalid('Transfer-Encoding is not allowed in an HTTP/1.0 request.');
    // Anything but plain chunked (gzip, chunked; identity; xchunked) is either framed differently by
    // someone on the path, or a coding we would forward undeclared, since Transfer-Encoding is hop-by-hop.
    if (transferEncoding.trim().toLowerCase() !== 'chunked') return invalid('The only transfer coding accepted is chunked.');
  }
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i].length === 4 && req.rawHeaders[i].toLowerCase() === 'host') hosts++;
  }
  if (hosts > 1 || (hosts === 0 && req.httpVersion === '1.1')) return invalid('An HTTP/1.1 request needs exactly one Host header.');
  return undefined;
}
