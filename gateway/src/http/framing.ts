import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors/envelope';
import { isValidHost } from './host';

// What node's parser lets through but a proxy must refuse (RFC 9112 §3.2, §6.1): a body framing that
// a proxy in front of us or the upstream could read differently (request smuggling), and a Host
// header that is missing, repeated or not a host; a head with more lines than we read; an upgrade
// that is not a WebSocket handshake. Node rejects Content-Length with Transfer-Encoding and
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
  if (hosts === 1 && !isValidHost(req.headers.host!)) return invalid('The Host header must be a host name or IP address, with an optional port.');
  return undefined;
}

/**
 * The server keeps at most `maxCount + 1` header lines (node's maxHeadersCount), so a request past
 * `maxCount` is refused whole: a line node would have dropped (a second Host, a Content-Length) is
 * never silently missing from what we check and forward. Duplicates count, as they are lines.
 */
export function headerCountError(req: IncomingMessage, maxCount: number): GatewayError | undefined {
  if (req.rawHeaders.length <= maxCount * 2) return undefined;
  return new GatewayError('headers_too_large', {
    message: `The request has more than ${maxCount} header lines.`,
    headers: { connection: 'close' },
  });
}

/**
 * Only a WebSocket handshake may switch protocols, and that is a GET (RFC 6455 §4.1). Any other
 * request carrying Upgrade (a POST, h2c, a protocol we cannot check the requests of) is refused,
 * with or without `Connection: upgrade`: never routed as itself, sent as something else, or tunnelled.
 */
export function upgradeError(req: IncomingMessage): GatewayError | undefined {
  const upgrade = req.headers.upgrade;
  if (upgrade === undefined) return undefined;
  if (upgrade.trim().toLowerCase() !== 'websocket') return invalid('Only WebSocket upgrades are supported.');
  if (req.method !== 'GET') return invalid('A WebSocket upgrade must be a GET request.');
  const connection = String(req.headers.connection ?? '').split(',');
  if (!connection.some((token) => token.trim().toLowerCase() === 'upgrade')) return invalid('A WebSocket upgrade needs "Connection: upgrade".');
  return undefined;
}
