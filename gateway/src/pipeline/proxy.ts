import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { mapUpstreamError } from '../errors/upstream';
import { BodyCounter } from '../proxy/body-counter';
import { plainAddress } from '../proxy/client-address';
import { clientResponseHeaders, upstreamRequestHeaders } from '../proxy/headers';
import { upstreamPath } from '../routing/route-table';
import { payloadTooLarge } from './body-limit';
import type { RequestContext } from './context';

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Everything the upstream needs to know about this request, for plain and upgrade requests alike. */
export function upstreamRequest(ctx: RequestContext) {
  const compiled = ctx.route!;
  const upstream = ctx.runtime.config.upstreams[compiled.route.upstream];
  const target = ctx.runtime.upstreams.pick(compiled.route.upstream);
  ctx.upstreamTarget = target.origin;
  const peer = plainAddress(ctx.req.socket.remoteAddress ?? '');
  const headers = upstreamRequestHeaders(ctx.req.headers, {
    requestId: ctx.requestId,
    peer,
    peerTrusted: ctx.runtime.trustedProxies.has(peer),
    consumerId: ctx.consumer!.id,
    consumerTier: ctx.consumer!.tier,
  });
  return {
    target,
    path: upstreamPath(compiled, ctx.path) + ctx.query,
    headers,
    timeoutMs: compiled.route.timeout_ms ?? upstream.timeout_ms,
  };
}

/** Forwards the request and streams the answer back; neither body is ever buffered whole. */
export async function proxy(ctx: RequestContext): Promise<void> {
  if (ctx.reply.kind !== 'http') throw new Error('proxy step reached with an upgrade request');
  const res = ctx.reply.res;
  const { target, path, headers, timeoutMs } = upstreamRequest(ctx);
  const counter = hasBody(ctx.req) ? new BodyCounter(ctx.route!.route.max_body_bytes) : null;
  // Errors of the client's side of the body pipe surface through the upstream request below.
  if (counter) ctx.req.pipe(counter);

  let upstreamResponse;
  try {
    upstreamResponse = await target.pool.request({
      method: ctx.req.method as 'GET',
      path,
      headers,
      body: counter,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: ctx.abort.signal,
    });
  } catch (err) {
    if (counter?.overLimit) throw payloadTooLarge(ctx);
    throw mapUpstreamError(err);
  }

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
