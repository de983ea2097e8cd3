import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { GatewayError, serviceUnavailable } from '../errors/envelope';
import { isClientFault, isConnectFailure, isKnownUpstreamFailure, mapUpstreamError } from '../errors/upstream';
import { BodyCounter } from '../proxy/body-counter';
import { answersWithoutBody, bodilessHeaders } from '../proxy/bodiless';
import { dispatchExchange, UpstreamExchange, type UpstreamHead } from '../proxy/exchange';
import { plainAddress } from '../http/client-address';
import { isEncrypted, verifiedClientSubject } from '../http/tls-listener';
import { clientResponseHeaders, upstreamRequestHeaders } from '../proxy/headers';
import { watchForStall } from '../proxy/stall-watchdog';
import type { Target } from '../proxy/upstreams';
import { upstreamDurationBy, upstreamErrors } from '../metrics/registry';
import { upstreamPath } from '../routing/route-table';
import { payloadTooLarge } from './body-limit';
import type { RequestAbort } from './abort';
import { BODY_MALFORMED, BODY_STALLED, clientWentAway, countedCaller, UPSTREAM_TIMED_OUT, type RequestContext } from './context';

// Methods whose repetition has the same effect as one request (RFC 9110 §9.2.2).
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** What the upstream is sent, the same on every attempt (the X-Request-Id included). */
export function upstreamRequest(ctx: RequestContext) {
  const compiled = ctx.route!.route;
  const upstream = ctx.runtime.config.upstreams[compiled.upstream];
  const peer = plainAddress(ctx.req.socket.remoteAddress ?? '');
  const headers = upstreamRequestHeaders(ctx.req.headers, {
    requestId: ctx.requestId,
    peer,
    peerTrusted: ctx.runtime.trustedProxies.has(peer),
    consumerId: ctx.consumer?.id,
    consumerTier: countedCaller(ctx).tier,
    underscores: ctx.runtime.config.listen.underscores_in_headers,
    encrypted: isEncrypted(ctx.req.socket),
    clientCertSubject: ctx.runtime.config.listen.tls?.client_auth ? verifiedClientSubject(ctx.req.socket) : undefined,
  });
  return {
    path: upstreamPath(ctx.route!, ctx.path) + ctx.query,
    headers,
    timeoutMs: compiled.timeout_ms ?? upstream.timeout_ms,
    countFiveHundreds: upstream.breaker.on_5xx,
  };
}

/**
 * Forwards the request and streams the answer back. The route's timeout bounds the whole exchange up
 * to the answer's head, including the wait for a pool connection and the client's body; a small body
 * is read whole first, so a slow writer holds no upstream connection. A connect failure of a bodiless
 * idempotent request is retried on another target. Each attempt settles its target's breaker once:
 * failure only for the upstream's own faults.
 */
export async function proxy(ctx: RequestContext): Promise<void> {
  if (ctx.reply.kind !== 'http') throw new Error('proxy step reached with an upgrade request');
  const res = ctx.reply.res;
  const route = ctx.route!.route;
  const { listen } = ctx.runtime.config;
  const { path, headers, timeoutMs, countFiveHundreds } = upstreamRequest(ctx);
  const method = ctx.req.method ?? 'GET';
  // undici checks its own timeouts on a coarse clock (a 1 s timeout answered 504 after 1.5 s): this
  // timer is exact, and also reaches a request still queued for a connection.
  const timer = setTimeout(() => ctx.abort.abort(UPSTREAM_TIMED_OUT), timeoutMs);
  const deadline = Date.now() + timeoutMs;
  let giveBackShare: () => void = () => {};
  try {
    const body = hasBody(ctx.req) ? await requestBody(ctx, listen.request_buffer_bytes, listen.body_timeout) : null;
    const claimed = ctx.runtime.upstreams.claim(route.upstream, countedCaller(ctx).id, ctx.abort);
    giveBackShare =
      typeof claimed === 'function'
        ? claimed
        : await claimed.catch((reason) => {
            throw bodyFault(ctx, body instanceof BodyCounter ? body : null) ?? (reason === UPSTREAM_TIMED_OUT ? noConnectionInTime() : reason);
          });
    // A streamed body cannot be replayed: only bodiless or buffered requests get another attempt.
    let retriesLeft = !(body instanceof BodyCounter) && IDEMPOTENT.has(method) ? route.retries : 0;
    let target: Target = ctx.runtime.upstreams.pick(route.upstream);
    let exchange: UpstreamExchange;
    let head: UpstreamHead;
    for (;;) {
      ctx.upstreamTarget = target.origin;
      const attemptStartedAt = performance.now();
      exchange = new UpstreamExchange(ctx.abort, body);
      try {
        dispatchExchange(
          target.pool,
          {
            method: method as 'GET',
            path,
            headers,
            body,
            // Backstops only (the timer above is exact), and the same value for both: undici makes
            // its parser a new timer whenever the value changes, and its timers are collected only
            // every half second, so a value per request kept thousands alive past young-generation GCs.
            headersTimeout: timeoutMs,
            bodyTimeout: timeoutMs,
          },
          exchange,
        );
        head = await exchange.head;
        upstreamDurationBy(route.upstream).observe((performance.now() - attemptStartedAt) / 1000);
        break;
      } catch (err) {
        const failure = attemptFailure(ctx, err, exchange.dispatched, body);
        if (clientWentAway(ctx.abort) || failure.code === 'service_unavailable' || isClientFault(failure)) {
          target.breaker.release(); // not the target's doing
          throw failure;
        }
        if (ctx.abort.reason !== UPSTREAM_TIMED_OUT && !isKnownUpstreamFailure(err)) {
          // Answered 502, but it may be a bug of ours rather than the upstream's: say so, eject nobody.
          ctx.runtime.log.warn({ request_id: ctx.requestId, err: (err as Error)?.message }, 'unrecognised upstream failure');
          target.breaker.release();
          throw failure;
        }
        target.breaker.failure();
        upstreamErrors.inc({ upstream: route.upstream, code: failure.code });
        logAttemptFailure(ctx, target, err);
        if (retriesLeft === 0 || !isConnectFailure(err) || Date.now() >= deadline) throw failure;
        retriesLeft--;
        target = pickAnother(ctx, target, failure);
      }
    }
    // The timeout bounds the whole exchange: a body still arriving after the answer began is cut at it.
    if (body instanceof BodyCounter && !ctx.req.complete) body.once('end', () => clearTimeout(timer));
    else clearTimeout(timer);

    const status = head.statusCode;
    if (countFiveHundreds && status >= 500) target.breaker.failure();
    else target.breaker.success();
    ctx.status = status;
    const answerHeaders = clientResponseHeaders(head.headers, ctx.requestId, ctx.responseHeaders);
    if (answersWithoutBody(method, status)) {
      res.writeHead(status, bodilessHeaders(method, status, answerHeaders));
      if (ctx.giveBackSlot) await ctx.giveBackSlot();
      res.end();
      exchange.discard((err) => warnExtraBytes(ctx, err));
      return;
    }
    res.writeHead(status, answerHeaders);
    const failure = await exchange.relay(res, listen.send_timeout, ctx.giveBackSlot);
    if (failure && !ctx.abort.aborted) {
      ctx.runtime.log.warn({ request_id: ctx.requestId, err: failure.message }, 'upstream body failed mid-stream');
    }
  } finally {
    clearTimeout(timer);
    giveBackShare();
  }
}

/** An upstream sent a body with an answer that has none: the client got the head alone, the connection is gone. */
export function warnExtraBytes(ctx: RequestContext, err: Error): void {
  if (ctx.abort.aborted) return;
  ctx.runtime.log.warn({ request_id: ctx.requestId, status: ctx.status, err: err.message }, 'upstream sent a body with a bodiless answer; its connection was dropped');
}

/**
 * What one failed attempt means. The client's faults (a body too large, malformed, or too slow; a
 * request undici refuses) are 4xx; a timeout before the pool gave the request a connection is our
 * saturation (503); the rest is the upstream's (502/504). The caller tells a client gone by the signal.
 */
function attemptFailure(ctx: RequestContext, err: unknown, dispatched: boolean, body: Buffer | BodyCounter | null): GatewayError {
  const reason: unknown = ctx.abort.reason;
  const clientFault = bodyFault(ctx, body instanceof BodyCounter ? body : null);
  if (clientFault) return clientFault;
  if (reason === UPSTREAM_TIMED_OUT && !dispatched) return noConnectionInTime();
  if (reason === UPSTREAM_TIMED_OUT) return new GatewayError('gateway_timeout', { cause: err });
  return mapUpstreamError(err);
}

/**
 * Why an attempt counted against its target failed (a refused connection, a TLS certificate the
 * upstream's CA did not sign, a timeout): the envelope says only 502/504. Error texts name hosts and
 * certificate fields, never key material.
 */
export function logAttemptFailure(ctx: RequestContext, target: Target, err: unknown): void {
  // The route's timeout aborts with a symbol (pipeline/context.ts): its description says which.
  const { code, message } = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; message?: unknown };
  const reason = typeof message === 'string' ? message : typeof err === 'symbol' ? err.description : String(err);
  ctx.runtime.log.warn(
    { request_id: ctx.requestId, upstream: target.upstream, target: target.origin, err: reason, err_code: code },
    'upstream attempt failed',
  );
}

/** The client's fault in sending its body, if it is one: too large (413), malformed (400), too slow (408). */
function bodyFault(ctx: RequestContext, counter: BodyCounter | null): GatewayError | undefined {
  const reason: unknown = ctx.abort.reason;
  if (counter?.overLimit) return payloadTooLarge(ctx);
  if (reason === BODY_MALFORMED) return malformedBody();
  // The route's timeout passing while the body is still arriving is the client's fault too.
  if (reason === BODY_STALLED || (reason === UPSTREAM_TIMED_OUT && counter && !ctx.req.complete)) return requestTimeout();
  return undefined;
}

/**
 * The body of a request that has one: a Buffer when it is declared small (read whole first, under the
 * route's timeout and body_timeout); else the client's stream, counted and watched for stalls.
 */
async function requestBody(ctx: RequestContext, bufferBytes: number, bodyTimeoutMs: number): Promise<Buffer | BodyCounter> {
  const counter = new BodyCounter(ctx.route!.route.max_body_bytes);
  // The client's pauses count, not the upstream's: a body waiting for the upstream to take it is not stalled.
  const unwatch = watchForStall({
    stalled: (now) => !ctx.req.complete && !counter.backedUp && now - counter.lastChunkAt >= bodyTimeoutMs,
    onStall: () => ctx.abort.abort(BODY_STALLED),
  });
  counter.once('end', unwatch).once('close', unwatch);
  ctx.req.pipe(counter); // errors of the client's side surface through the upstream request
  const declared = Number(ctx.req.headers['content-length']);
  if (!(declared <= bufferBytes)) return counter;
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of untilAbortedIterable(counter, ctx.abort)) chunks.push(chunk as Buffer);
  } catch (err) {
    throw bodyFault(ctx, counter) ?? err; // else the client went away: nobody to answer
  }
  return Buffer.concat(chunks);
}

/** The route's timeout passed before the request got a connection: our capacity, not the upstream's speed. */
export function noConnectionInTime(): GatewayError {
  return serviceUnavailable({ message: 'No connection to the upstream service became free in time. Please try again shortly.' });
}

function requestTimeout(): GatewayError {
  return new GatewayError('request_timeout', {
    message: 'The request body did not arrive in time.',
    headers: { connection: 'close' },
  });
}

function malformedBody(): GatewayError {
  return new GatewayError('invalid_request', { message: 'The request body is malformed (its chunked framing is invalid or cut short).' });
}

/** Another target for a retry; if none takes traffic, the failure that prompted the retry stands. */
function pickAnother(ctx: RequestContext, failed: Target, failure: GatewayError): Target {
  try {
    return ctx.runtime.upstreams.pick(ctx.route!.route.upstream, failed);
  } catch {
    throw failure;
  }
}

/** Reads `stream` until it ends, or fails as soon as `signal` aborts. */
async function* untilAbortedIterable(stream: Readable, signal: RequestAbort): AsyncGenerator<unknown> {
  const onAbort = () => stream.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  if (signal.aborted) onAbort();
  signal.once('abort', onAbort);
  try {
    yield* stream;
  } finally {
    signal.off('abort', onAbort);
  }
}
