import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { GatewayError } from '../errors/envelope';
import { isConnectFailure, mapUpstreamError } from '../errors/upstream';
import { BodyCounter } from '../proxy/body-counter';
import { plainAddress } from '../proxy/client-address';
import { clientResponseHeaders, upstreamRequestHeaders } from '../proxy/headers';
import type { Target } from '../proxy/upstreams';
import { upstreamDurationBy, upstreamErrors } from '../metrics/registry';
import { upstreamPath } from '../routing/route-table';
import { payloadTooLarge } from './body-limit';
import { BODY_MALFORMED, UPSTREAM_TIMED_OUT, type RequestContext } from './context';

// Methods whose repetition has the same effect as one request (RFC 9110 §9.2.2).
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** What the upstream is sent, the same on every attempt (the X-Request-Id included). */
export function upstreamRequest(ctx: RequestContext) {
  const compiled = ctx.route!;
  const upstream = ctx.runtime.config.upstreams[compiled.route.upstream];
  const peer = plainAddress(ctx.req.socket.remoteAddress ?? '');
  const headers = upstreamRequestHeaders(ctx.req.headers, {
    requestId: ctx.requestId,
    peer,
    peerTrusted: ctx.runtime.trustedProxies.has(peer),
    consumerId: ctx.consumer!.id,
    consumerTier: ctx.consumer!.tier,
  });
  return {
    path: upstreamPath(compiled, ctx.path) + ctx.query,
    headers,
    timeoutMs: compiled.route.timeout_ms ?? upstream.timeout_ms,
    countFiveHundreds: upstream.breaker.on_5xx,
  };
}

/**
 * Forwards the request and streams the answer back; neither body is ever buffered whole.
 * A connect failure of a bodiless idempotent request is retried on another target, within the
 * route's retries and total timeout. Each attempt's outcome feeds its target's breaker.
 */
export async function proxy(ctx: RequestContext): Promise<void> {
  if (ctx.reply.kind !== 'http') throw new Error('proxy step reached with an upgrade request');
  const res = ctx.reply.res;
  const route = ctx.route!.route;
  const { path, headers, timeoutMs, countFiveHundreds } = upstreamRequest(ctx);
  const method = ctx.req.method ?? 'GET';
  const counter = hasBody(ctx.req) ? new BodyCounter(route.max_body_bytes) : null;
  // Errors of the client's side of the body pipe surface through the upstream request below.
  if (counter) ctx.req.pipe(counter);
  // A streamed body cannot be replayed, so only bodiless requests get another attempt.
  let retriesLeft = counter === null && IDEMPOTENT.has(method) ? route.retries : 0;
  const deadline = Date.now() + timeoutMs;
  // undici checks headersTimeout on a coarse clock (a 1 s timeout answered 504 after 1.5 s): this
  // timer is exact. It aborts the attempt under way; headersTimeout stays as a backstop.
  const timer = setTimeout(() => ctx.abort.abort(UPSTREAM_TIMED_OUT), timeoutMs);

  let target: Target = ctx.runtime.upstreams.pick(route.upstream);
  let upstreamResponse;
  try {
    for (;;) {
      ctx.upstreamTarget = target.origin;
      const attemptTimer = upstreamDurationBy(route.upstream).startTimer();
      try {
        upstreamResponse = await target.pool.request({
          method: method as 'GET',
          path,
          headers,
          body: counter,
          headersTimeout: Math.max(1, deadline - Date.now()),
          bodyTimeout: timeoutMs,
          signal: ctx.abort.signal,
        });
        attemptTimer();
        break;
      } catch (err) {
        if (ctx.abort.signal.reason === UPSTREAM_TIMED_OUT) {
          target.breaker.failure();
          upstreamErrors.inc({ upstream: route.upstream, code: 'gateway_timeout' });
          throw new GatewayError('gateway_timeout', { cause: err });
        }
        if (ctx.abort.signal.aborted || counter?.overLimit) {
          target.breaker.release(); // the client's doing, not the target's
          if (counter?.overLimit) throw payloadTooLarge(ctx);
          if (ctx.abort.signal.reason === BODY_MALFORMED) throw malformedBody();
          throw err;
        }
        const failure = mapUpstreamError(err);
        if (failure.code === 'invalid_request') {
          target.breaker.release();
          throw failure;
        }
        target.breaker.failure();
        upstreamErrors.inc({ upstream: route.upstream, code: failure.code });
        if (retriesLeft === 0 || !isConnectFailure(err) || Date.now() >= deadline) throw failure;
        retriesLeft--;
        target = pickAnother(ctx, target, failure);
      }
    }
  } finally {
    clearTimeout(timer);
  }

  if (countFiveHundreds && upstreamResponse.statusCode >= 500) target.breaker.failure();
  else target.breaker.success();
  ctx.status = upstreamResponse.statusCode;
  res.writeHead(upstreamResponse.statusCode, {
    ...clientResponseHeaders(upstreamResponse.headers, ctx.requestId),
    ...ctx.responseHeaders,
  });
  const failure = await relay(upstreamResponse.body, res);
  if (failure && !ctx.abort.signal.aborted) {
    ctx.runtime.log.warn({ request_id: ctx.requestId, err: failure.message }, 'upstream body failed mid-stream');
  }
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

/**
 * Streams the upstream body to the client. Plain pipe() plus two listeners: stream.pipeline()'s
 * bookkeeping cost a third of the gateway's throughput on small responses (measured, see README).
 * Resolves with the upstream's error if its body failed; the client connection is then cut, the only
 * honest signal once headers are sent. A client that goes away stops the upstream body too.
 */
function relay(body: Readable, res: ServerResponse): Promise<Error | undefined> {
  return new Promise((resolve) => {
    body.once('error', (err) => {
      res.destroy();
      resolve(err);
    });
    res.once('close', () => {
      if (!res.writableFinished) body.destroy();
      resolve(undefined);
    });
    body.pipe(res);
  });
}
