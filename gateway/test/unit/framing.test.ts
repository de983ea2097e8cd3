import type { IncomingMessage } from 'node:http';
import { framingError, headerCountError, upgradeError } from '../../src/http/framing';

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

describe('framingError: Host', () => {
  it.each(['user:pass@evil.example', 'evil.example/x?y', 'evil example', '<script>', 'evil.example:', '[::1', '%65vil.example', ''])(
    'refuses Host: %j with 400 invalid_request, connection closed',
    (host) => {
      const err = framingError(request('1.1', ['Host', host]));
      expect(err?.code).toBe('invalid_request');
      expect(err?.options.headers).toEqual({ connection: 'close' });
    },
  );
  it.each(['example.com:8080', '[::1]:80', '127.0.0.1'])('lets Host: %s through', (host) => {
    expect(framingError(request('1.1', ['Host', host]))).toBeUndefined();
  });
});

describe('headerCountError', () => {
  const lines = (n: number) => Array.from({ length: n }, (_, i) => [`x-h${i}`, '1']).flat();
  it('lets up to the count through, and refuses one more with 431 headers_too_large, connection closed', () => {
    expect(headerCountError(request('1.1', lines(100)), 100)).toBeUndefined();
    const err = headerCountError(request('1.1', lines(101)), 100);
    expect(err?.code).toBe('headers_too_large');
    expect(err?.status).toBe(431);
    expect(err?.options.headers).toEqual({ connection: 'close' });
  });
  it('counts duplicate lines', () => {
    const duplicates = Array.from({ length: 6 }, () => ['x-dup', '1']).flat();
    expect(headerCountError(request('1.1', duplicates), 5)?.code).toBe('headers_too_large');
  });
});

describe('upgradeError', () => {
  function upgrading(method: string, headers: Record<string, string>): IncomingMessage {
    return { method, headers } as unknown as IncomingMessage;
  }
  it('lets a plain request and a GET WebSocket handshake through', () => {
    expect(upgradeError(upgrading('POST', {}))).toBeUndefined();
    expect(upgradeError(upgrading('GET', { upgrade: 'websocket', connection: 'Upgrade' }))).toBeUndefined();
    expect(upgradeError(upgrading('GET', { upgrade: 'WebSocket', connection: 'keep-alive, upgrade' }))).toBeUndefined();
  });
  it.each([
    ['POST', { upgrade: 'websocket', connection: 'Upgrade' }],
    ['PUT', { upgrade: 'websocket', connection: 'Upgrade' }],
    ['HEAD', { upgrade: 'websocket', connection: 'Upgrade' }],
    ['GET', { upgrade: 'h2c', connection: 'Upgrade, HTTP2-Settings' }],
    ['GET', { upgrade: 'websocket, h2c', connection: 'Upgrade' }],
    ['GET', { upgrade: 'websocket' }],
    ['GET', { upgrade: 'websocket', connection: 'keep-alive' }],
    ['GET', { upgrade: '', connection: 'Upgrade' }],
  ])('refuses %s with %j: 400 invalid_request', (method, headers) => {
    expect(upgradeError(upgrading(method, headers))?.code).toBe('invalid_request');
  });
});
