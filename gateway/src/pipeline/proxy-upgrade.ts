import type { Duplex } from 'node:stream';
import { GatewayError } from '../errors/envelope';
import { mapUpstreamError } from '../errors/upstream';
import { upstreamErrors } from '../metrics/registry';
import { rawResponseHead } from '../proxy/raw-response';
import type { RequestContext } from './context';
import { upstreamRequest } from './proxy';

/** Joins two sockets; either side closing or failing tears down both. */
function splice(client: Duplex, upstream: Duplex): void {
  const closeBoth = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', closeBoth).on('close', closeBoth);
  upstream.on('error', closeBoth).on('close', closeBoth);
  client.pipe(upstream);
  upstream.pipe(client);
}

/** WebSocket upgrades, authenticated like any request, then forwarded with undici's upgrade(). */
export async function proxyUpgrade(ctx: RequestContext): Promise<void> {
  if (ctx.reply.kind !== 'upgrade') throw new Error('upgrade step reached with a plain request');
  const { socket: client, head } = ctx.reply;
  // Only WebSocket is tunnelled. An h2c (or other) tunnel would carry requests of its own that skip
  // the route, scope and rate-limit checks each request must pass ("h2c smuggling").
  if (ctx.req.headers.upgrade?.toLowerCase() !== 'websocket') {
    throw new GatewayError('invalid_request', { details: { reason: 'only WebSocket upgrades are supported' } });
  }
  const { path, headers, timeoutMs } = upstreamRequest(ctx);
  const target = ctx.runtime.upstreams.pick(ctx.route!.route.upstream);
  ctx.upstreamTarget = target.origin;
  const protocol = 'websocket';

  let upgraded;
  try {
    upgraded = await target.pool.upgrade({
      method: 'GET',
      path,
      headers,
      protocol,
      signal: ctx.abort.signal,
      // Not in UpgradeOptions' type, but upgrade() hands its options to dispatch(), which honours it.
      headersTimeout: timeoutMs,
    } as Parameters<typeof target.pool.upgrade>[0]);
  } catch (err) {
    if (ctx.abort.signal.aborted) {
      target.breaker.release();
      throw err;
    }
    target.breaker.failure();
    const failure = mapUpstreamError(err);
    upstreamErrors.inc({ upstream: ctx.route!.route.upstream, code: failure.code });
    throw failure;
  }
  target.breaker.success();
  const upstreamSocket = upgraded.socket;
  if (client.destroyed) {
    upstreamSocket.destroy();
    return;
  }
  ctx.status = 101;
  const responseHeaders = { ...upgraded.headers, connection: 'Upgrade', upgrade: protocol, 'x-request-id': ctx.requestId };
  client.write(rawResponseHead(101, responseHeaders));
  if (head.length > 0) upstreamSocket.write(head);
  ctx.reply.upstream = upstreamSocket;
  splice(client, upstreamSocket);
}
