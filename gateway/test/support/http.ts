import net from 'node:net';
import { request as undiciRequest, Agent } from 'undici';
import { envelopeProblem } from './envelope';

// A fresh agent per call site keeps tests from sharing keep-alive sockets by accident.
export const agent = new Agent({ keepAliveTimeout: 1000, connections: 64 });

export interface SimpleResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** One request through undici (paths are sent exactly as given). */
export async function send(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer; dispatcher?: Agent; signal?: AbortSignal } = {},
): Promise<SimpleResponse> {
  const res = await undiciRequest(url, {
    method: (options.method ?? 'GET') as 'GET',
    headers: options.headers,
    body: options.body,
    dispatcher: options.dispatcher ?? agent,
    signal: options.signal,
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

/** Writes raw bytes on a new socket and returns everything the server sent until it closed (or `timeoutMs`). */
export function rawExchange(port: number, payload: string | Buffer, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(received);
    }, timeoutMs);
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('error', (err) => {
      clearTimeout(timer);
      if (received) resolve(received);
      else reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.write(payload);
  });
}

/** Splits a raw HTTP/1.1 response into status, lower-cased headers and body. */
export function parseRawResponse(raw: string): { status: number; headers: Record<string, string>; body: string } {
  const split = raw.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = raw.slice(0, split).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: raw.slice(split + 4) };
}

/**
 * Asserts the seed's envelope with this status and code (the checks of envelopeProblem, the one
 * envelope checker) and returns its `error` object.
 */
export function expectEnvelope(res: { status: number; headers: Record<string, any>; json?: any; text?: string; body?: string }, status: number, code: string): any {
  const text = res.body ?? res.text ?? JSON.stringify(res.json);
  expect(res.status).toBe(status);
  expect(envelopeProblem(res.status, res.headers, text)).toBeUndefined();
  const error = JSON.parse(text).error;
  expect(error.code).toBe(code);
  return error;
}
