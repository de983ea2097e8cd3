import type { IncomingHttpHeaders } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { errors as undiciErrors, type Dispatcher, type Pool } from 'undici';
import { GatewayError } from '../errors/envelope';
import { isClientFault, mapUpstreamError } from '../errors/upstream';
import { upstreamErrors } from '../metrics/registry';
import type { Breaker } from '../proxy/breaker';
import { clientResponseHeaders } from '../proxy/headers';
import { rawResponseHead } from '../http/raw-response';
import type { RequestAbort } from './abort';
import { UPSTREAM_TIMED_OUT, type RequestContext } from './context';
import { logAttemptFailure, noConnectionInTime, upstreamRequest, warnExtraBytes } from './proxy';
import { answersWithoutBody, bodilessHeaders, discardBody } from '../proxy/bodiless';

const PROTOCOL = 'websocket';

/** The upstream's answer to an upgrade request: it switched protocols, or it answered as to any request. */
type UpgradeAnswer =
  | { kind: 'upgraded'; headers: IncomingHttpHeaders; socket: Duplex }
  | { kind: 'declined'; status: number; headers: IncomingHttpHeaders; body: Readable };

/** WebSocket upgrades, authenticated like any request, then forwarded to the upstream. */
export async function proxyUpgrade(ctx: RequestContext): Promise<void> {
  if (ctx.reply.kind !== 'upgrade') throw new Error('upgrade step reached with a plain request');
  const { socket: client, head } = ctx.reply;
  // Only a GET WebSocket handshake gets here (server.ts, upgradeError): an h2c (or other) tunnel would
  // carry requests of its own that skip the route, scope and rate-limit checks ("h2c smuggling").
  const { path, headers, timeoutMs, countFiveHundreds } = upstreamRequest(ctx);
  const target = ctx.runtime.upstreams.pick(ctx.route!.route.upstream);
  ctx.upstreamTarget = target.origin;

  // pick() may have handed out a half-open breaker's one trial: it must end in exactly one verdict.
  // The first verdict given stands; leaving without one (client gone, a bug) releases the trial.
  const settle = firstVerdict(target.breaker);
  // The route's timeout reaches an upgrade still queued for a connection too (undici's does not).
  const timer = setTimeout(() => ctx.abort.abort(UPSTREAM_TIMED_OUT), timeoutMs);
  const progress = { dispatched: false };
  try {
    let answer: UpgradeAnswer;
    try {
      answer = await exchangeUpgrade(
        target.pool,
        { method: 'GET', path, headers, upgrade: PROTOCOL, headersTimeout: timeoutMs, bodyTimeout: timeoutMs },
        ctx.abort,
        progress,
      );
    } catch (err) {
      if (ctx.abort.reason === UPSTREAM_TIMED_OUT) {
        if (!progress.dispatched) throw noConnectionInTime(); // our capacity, not the target's speed
        settle('failure');
        upstreamErrors.inc({ upstream: ctx.route!.route.upstream, code: 'gateway_timeout' });
        throw new GatewayError('gateway_timeout', { cause: err });
      }
      if (ctx.abort.aborted) throw err; // the client's doing, not the target's
      const failure = mapUpstreamError(err);
      // undici refusing the client's request, or our pool closed by a reload: not the target's doing.
      if (isClientFault(failure) || failure.code === 'service_unavailable') throw failure;
      settle('failure');
      upstreamErrors.inc({ upstream: ctx.route!.route.upstream, code: failure.code });
      logAttemptFailure(ctx, target, err);
      throw failure;
    }

    if (answer.kind === 'upgraded') {
      settle('success');
      const upstreamSocket = answer.socket;
      if (client.destroyed) {
        upstreamSocket.destroy();
        return;
      }
      ctx.status = 101;
      writeHead(client, 101, { ...answer.headers, connection: 'Upgrade', upgrade: PROTOCOL, 'x-request-id': ctx.requestId });
      if (head.length > 0) upstreamSocket.write(head);
      ctx.reply.upstream = upstreamSocket;
      splice(client, upstreamSocket);
      return;
    }

    // Declined: the upstream answered, so it is up. Its answer is judged like a plain request's:
    // a success, unless it is a 5xx and the upstream counts those (breaker.on_5xx).
    const { status, body } = answer;
    settle(countFiveHundreds && status >= 500 ? 'failure' : 'success');
    ctx.status = status;
    if (client.destroyed) {
      body.destroy();
      return;
    }
    if (answersWithoutBody('GET', status)) {
      writeHead(client, status, bodilessHeaders('GET', status, declinedHeaders(ctx, status, answer.headers)));
      client.end();
      discardBody(body, (err) => warnExtraBytes(ctx, err));
      return;
    }
    writeHead(client, status, declinedHeaders(ctx, status, answer.headers));
    const failure = await relay(body, client);
    if (failure && !ctx.abort.aborted) {
      ctx.runtime.log.warn({ request_id: ctx.requestId, err: failure.message }, 'upstream body failed mid-stream');
    }
  } finally {
    clearTimeout(timer);
    settle('release');
  }
}

/** A breaker verdict that can be given once: later calls are ignored. */
function firstVerdict(breaker: Breaker): (verdict: 'success' | 'failure' | 'release') => void {
  let given = false;
  return (verdict) => {
    if (given) return;
    given = true;
    breaker[verdict]();
  };
}

/**
 * Sends the upgrade request with dispatch() rather than upgrade(), which throws away any answer but
 * a 101; `progress.dispatched` tells whether it left the pool's queue. Resolves with the upstream's socket once it switched protocols, or with its status, headers
 * and a streamed body when it declined. Rejects on transport failures, and when `signal` aborts
 * before the answer; an abort after it stops the body.
 */
function exchangeUpgrade(pool: Pool, options: Dispatcher.DispatchOptions, signal: RequestAbort, progress: { dispatched: boolean }): Promise<UpgradeAnswer> {
  return new Promise((resolve, reject) => {
    // Set once undici starts the request on a connection; until then it waits in the pool's queue.
    let controller: Dispatcher.DispatchController | undefined;
    let body: Readable | undefined;
    const onAbort = () => {
      const reason = new undiciErrors.RequestAbortedError();
      controller?.abort(reason); // otherwise onRequestStart aborts it
      reject(reason); // no effect once answered
    };
    const done = () => signal.off('abort', onAbort);
    if (signal.aborted) return onAbort();
    signal.once('abort', onAbort);

    pool.dispatch(options, {
      onRequestStart(started) {
        controller = started;
        progress.dispatched = true;
        if (signal.aborted) started.abort(new undiciErrors.RequestAbortedError());
      },
      onRequestUpgrade(_controller, _status, headers, socket) {
        done();
        resolve({ kind: 'upgraded', headers, socket });
      },
      onResponseStart(started, status, headers) {
        if (status < 200) return; // interim (103 Early Hints): the final answer follows
        // Backpressure: undici pauses while the client is slow to take the body.
        body = new Readable({
          read: () => started.resume(),
          destroy: (err, callback) => {
            started.abort(err ?? new undiciErrors.RequestAbortedError()); // no effect once complete
            callback(err);
          },
        });
        resolve({ kind: 'declined', status, headers, body });
      },
      onResponseData(started, chunk) {
        if (!body!.push(chunk)) started.pause();
      },
      onResponseEnd() {
        done();
        body!.push(null);
      },
      onResponseError(_controller, err) {
        done();
        if (body) body.destroy(err);
        else reject(err);
      },
    });
  });
}

/**
 * The declined answer's headers: the upstream's less hop-by-hop ones, then ours (request id, rate
 * limits). The client asked to switch protocols and was refused: the exchange is over, and so is the
 * connection. A 426 must name the protocol to switch to (RFC 9110 §15.5.22), but Upgrade is
 * hop-by-hop: the gateway makes that offer itself, for WebSocket (the one protocol it tunnels), when
 * the upstream offered it.
 */
function declinedHeaders(ctx: RequestContext, status: number, upstream: IncomingHttpHeaders): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {
    ...clientResponseHeaders(upstream, ctx.requestId, ctx.responseHeaders),
    connection: 'close',
  };
  const offered = [upstream.upgrade ?? []].flat().join(',').split(',');
  if (status === 426 && offered.some((protocol) => protocol.trim().toLowerCase() === PROTOCOL)) {
    headers.upgrade = PROTOCOL;
    headers.connection = 'Upgrade, close';
  }
  return headers;
}

/** Header values are latin1 (as undici decoded them), so they are written back byte for byte. */
function writeHead(client: Duplex, status: number, headers: Record<string, string | string[] | undefined>): void {
  client.write(Buffer.from(rawResponseHead(status, headers), 'latin1'));
}

/**
 * Streams a declined answer's body to the client, then ends the connection. Resolves once the body
 * is out or the client is gone, with the upstream's error if its body failed (the connection is
 * then cut: the only honest signal once the head is sent).
 */
function relay(body: Readable, client: Duplex): Promise<Error | undefined> {
  return new Promise((resolve) => {
    body.once('error', (err) => {
      client.destroy();
      resolve(err);
    });
    client.once('finish', () => resolve(undefined));
    client.once('close', () => {
      body.destroy();
      resolve(undefined);
    });
    body.pipe(client);
  });
}

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
