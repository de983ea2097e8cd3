import type { IncomingMessage } from 'node:http';
import { framingError } from '../../src/http/framing';

/** The parts of a parsed request framingError reads. */
function request(httpVersion: string, rawHeaders: string[]): IncomingMessage {
  const headers: Record<string, string> = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    headers[name] = name in headers ? `${headers[name]}, ${rawHeaders[i + 1]}` : rawHeaders[i + 1];
  }
  return { httpVersion, rawHeaders, headers } as unknown as IncomingMessage;
}

describe('framingError', () => {
  it.each([
    ['1.1', ['Host', 'x']],
    ['1.1', ['host', 'x', 'transfer-encoding', 'chunked']],
    ['1.1', ['HOST', 'x', 'Transfer-Encoding', ' Chunked ']],
    ['1.0', []],
    ['1.0', ['host', 'x']],
  ])('lets HTTP/%s with %j through', (version, raw) => {
    expect(framingError(request(version, raw))).toBeUndefined();
  });

  it.each([
    ['1.1', ['host', 'x', 'transfer-encoding', 'xchunked']],
    ['1.1', ['host', 'x', 'transfer-encoding', 'identity']],
    ['1.1', ['host', 'x', 'transfer-encoding', 'gzip, chunked']],
    ['1.1', ['host', 'x', 'transfer-encoding', 'identity', 'transfer-encoding', 'chunked']],
    ['1.1', ['host', 'x', 'transfer-encoding', 'chunked', 'transfer-encoding', 'chunked']],
    ['1.0', ['host', 'x', 'transfer-encoding', 'chunked']],
    ['1.1', []],
    ['1.1', ['x-host', 'x']],
    ['1.1', ['host', 'x', 'Host', 'y']],
    ['1.0', ['host', 'x', 'host', 'x']],
  ])('refuses HTTP/%s with %j: 400 invalid_request, connection closed', (version, raw) => {
    const err = framingError(request(version, raw));
    expect(err?.code).toBe('invalid_request');
    expect(err?.status).toBe(400);
    expect(err?.options.headers).toEqual({ connection: 'close' });
  });
});
