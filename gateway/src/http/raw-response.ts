import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { envelopeResponse, type GatewayError } from '../errors/envelope';

type RawHeaders = Record<string, string | string[] | undefined>;

/** Status line and header lines of an HTTP/1.1 response, for sockets node's server no longer manages. */
export function rawResponseHead(status: number, headers: RawHeaders): string {
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) head += `${name}: ${one}\r\n`;
  }
  return head + '\r\n';
}

/** Answers `err` as an envelope on a raw socket (an upgrade, or a request the parser refused) and closes it. */
export function endSocketWithEnvelope(socket: Duplex, err: GatewayError, requestId: string, extraHeaders: RawHeaders = {}): number {
  const { status, headers, body } = envelopeResponse(err, requestId);
  if (socket.writable) socket.end(rawResponseHead(status, { ...extraHeaders, ...headers, connection: 'close' }) + body);
  return status;
}
