import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { asGatewayError, GatewayError, serviceUnavailable } from '../errors/envelope';
import { StoreUnavailableError } from '../redis/errors';
import { StoreNotInitialisedError } from '../keys/store-init';
import { LimiterUnavailableError } from '../ratelimit/resilient-limiter';
import type { FailedTokenGuard } from './failed-token-guard';
import { KeyServiceError, type KeyService } from './key-service';
import { decodeUtf8 } from './unicode';
import { createKeyInput, invalidParameters, listKeysQuery, parseInput, rotateKeyInput, updateKeyInput } from './validation';

// The key API under /v1/keys on the admin listener: bearer token, JSON in and out, envelopes on errors.

/** Admin bodies are a few fields; anything bigger is a mistake or an attack. */
export const MAX_ADMIN_BODY_BYTES = 16 * 1024;

export interface ApiAnswer {
  status: number;
  body: unknown;
}

interface Matched {
  id: string;
  query: Record<string, string>;
  /** Reads the JSON body; `optional`: undefined when there is none. */
  body(options?: { optional?: boolean }): Promise<unknown>;
}
type Handler = (service: KeyService, match: Matched) => Promise<ApiAnswer>;

const ID = '([^/]+)';
// Each handler parses what HTTP brought (400 invalid_parameters) and hands the service typed input.
const routes: { method: string; path: RegExp; handler: Handler }[] = [
  { method: 'POST', path: /^\/v1\/keys$/, handler: async (s, m) => ({ status: 201, body: await s.create(parseInput(createKeyInput, await m.body())) }) },
  { method: 'GET', path: /^\/v1\/keys$/, handler: async (s, m) => ({ status: 200, body: await s.list(parseInput(listKeysQuery, m.query, 'parameter')) }) },
  { method: 'GET', path: new RegExp(`^/v1/keys/${ID}$`), handler: async (s, m) => ({ status: 200, body: await s.get(m.id) }) },
  { method: 'PATCH', path: new RegExp(`^/v1/keys/${ID}$`), handler: async (s, m) => ({ status: 200, body: await s.update(m.id, parseInput(updateKeyInput, await m.body())) }) },
  { method: 'DELETE', path: new RegExp(`^/v1/keys/${ID}$`), handler: async (s, m) => ({ status: 200, body: await s.revoke(m.id) }) },
  {
    method: 'POST',
    path: new RegExp(`^/v1/keys/${ID}/rotate$`),
    handler: async (s, m) => {
      parseInput(rotateKeyInput, (await m.body({ optional: true })) ?? {});
      return { status: 201, body: await s.rotate(m.id) };
    },
  },
  { method: 'GET', path: new RegExp(`^/v1/keys/${ID}/usage$`), handler: async (s, m) => ({ status: 200, body: await s.usage(m.id) }) },
];

export function isKeysApiPath(path: string): boolean {
  return path === '/v1/keys' || path.startsWith('/v1/keys/');
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // malformed escapes: no key has such an id, so it is a 404
  }
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Compares hashes of both, so neither the length nor the content of the token leaks through timing. */
function tokenMatches(header: string | undefined, token: string): boolean {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  return match !== null && timingSafeEqual(digest(match[1]), digest(token));
}

function payloadTooLarge(): GatewayError {
  return new GatewayError('payload_too_large', {
    message: `The request body is larger than the key API accepts (${MAX_ADMIN_BODY_BYTES} bytes).`,
    details: { max_body_bytes: MAX_ADMIN_BODY_BYTES },
    headers: { connection: 'close' },
  });
}

/**
 * The JSON body, read whole up to MAX_ADMIN_BODY_BYTES: refused (413) as soon as it is known to be
 * larger (its Content-Length, or the byte past the limit); 408 when no byte came for `gapMs`.
 */
function readBody(req: IncomingMessage, optional: boolean, gapMs: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  const hasBody = declared > 0 || req.headers['transfer-encoding'] !== undefined;
  if (!hasBody && optional) return Promise.resolve(undefined);
  if (declared > MAX_ADMIN_BODY_BYTES) return Promise.reject(payloadTooLarge());
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    return Promise.reject(invalidParameters('content-type', 'application/json', "The 'content-type' header must be application/json"));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: NodeJS.Timeout | undefined;
    const stop = (err: GatewayError) => {
      clearTimeout(timer);
      req.removeAllListeners('data');
      reject(err); // the answer closes the connection; the rest of the body is read and dropped (lingerOnClose)
    };
    const armTimer = () => {
      clearTimeout(timer);
      timer = setTimeout(() => stop(new GatewayError('request_timeout', { headers: { connection: 'close' } })), gapMs);
    };
    armTimer();
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_ADMIN_BODY_BYTES) return stop(payloadTooLarge());
      chunks.push(chunk);
      armTimer();
    });
    // Cut short, or its framing broke: the server answers (or the client is gone); nothing is parsed.
    req.on('error', () => stop(new GatewayError('invalid_request', { headers: { connection: 'close' } })));
    req.on('end', () => {
      clearTimeout(timer);
      if (size > MAX_ADMIN_BODY_BYTES) return;
      const text = decodeUtf8(Buffer.concat(chunks));
      if (text === undefined) return reject(invalidParameters('body', 'valid UTF-8', 'The request body must be valid UTF-8'));
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(invalidParameters('body', 'valid JSON', 'The request body must be valid JSON'));
      }
    });
  });
}

export interface KeysApiOptions {
  service: KeyService;
  /** admin.token; without one every key API request is refused. */
  token: string | undefined;
  /** Wrong tokens per client address (admin.failed_tokens). */
  failedTokens: FailedTokenGuard;
  /** The real client of a request (honouring trusted_proxies). */
  clientAddress: (req: IncomingMessage) => string;
  /** listen.body_timeout: the longest gap between two reads of a body (then 408). */
  bodyTimeoutMs: number;
  log: Logger;
}

/** Answers one request under /v1/keys; throws nothing: every failure is returned as a GatewayError. */
export function createKeysApi({ service, token, failedTokens, clientAddress, bodyTimeoutMs, log }: KeysApiOptions) {
  if (!token) log.warn('admin.token is not set: the key API (/v1/keys) refuses every request with 401; /metrics, /healthz and /readyz stay open');

  return async (req: IncomingMessage, path: string, search: URLSearchParams, requestId: string): Promise<ApiAnswer | GatewayError> => {
    try {
      if (!token) throw new GatewayError('invalid_admin_token', { message: 'The key API is disabled: no admin.token is configured on this gateway.' });
      // A blocked address is refused even with the right token: a guesser must not learn it was right.
      const address = clientAddress(req);
      const blocked = failedTokens.refusal(address);
      if (blocked) throw blocked;
      if (!tokenMatches(req.headers.authorization, token)) {
        failedTokens.recordFailure(address);
        throw new GatewayError('invalid_admin_token', { headers: { 'www-authenticate': 'Bearer' } });
      }
      for (const route of routes) {
        const found = route.path.exec(path);
        if (!found || route.method !== req.method) continue;
        return await route.handler(service, {
          id: decodeSegment(found[1] ?? ''),
          query: Object.fromEntries(search),
          body: (options) => readBody(req, options?.optional ?? false, bodyTimeoutMs),
        });
      }
      throw new GatewayError('route_not_found');
    } catch (err) {
      if (err instanceof KeyServiceError) return answerFor(err);
      if (err instanceof StoreNotInitialisedError) {
        log.warn({ request_id: requestId }, 'key API: change refused, the key store holds no marker');
        return serviceUnavailable({ message: err.message, details: { reason: 'marker_missing' }, cause: err });
      }
      if (err instanceof StoreUnavailableError || err instanceof LimiterUnavailableError) {
        log.warn({ request_id: requestId, err: err.message }, 'key API: the key store is unavailable');
        return serviceUnavailable({ cause: err });
      }
      const failure = asGatewayError(err, requestId);
      if (failure.code === 'internal_error') log.error({ request_id: requestId, err }, 'key API: unexpected error');
      return failure;
    }
  };
}

export type KeysApi = ReturnType<typeof createKeysApi>;

/** The envelope for what the key service refused. */
function answerFor(err: KeyServiceError): GatewayError {
  const details = err.field ? { details: { field: err.field } } : {};
  switch (err.problem) {
    case 'not_found':
      return new GatewayError('key_not_found', { message: err.message });
    case 'exists':
      return new GatewayError('key_exists', { message: err.message });
    case 'unknown_tier':
      return new GatewayError('unknown_tier', { message: err.message, ...details });
    case 'invalid':
      return new GatewayError('validation_failed', { message: err.message, ...details });
  }
}
