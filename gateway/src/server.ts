import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { GatewayError, serviceUnavailable } from './errors/envelope';
import { framingError, headerCountError, upgradeError } from './http/framing';
import { isLingering } from './http/lingering-close';
import { parserRefusal } from './http/parser-refusal';
import { requestLimits } from './http/request-limits';
import { connectionEvent, createListener, prepareRenewal } from './http/tls-listener';
import { BODY_MALFORMED, type RequestContext, type Reply } from './pipeline/context';
import { RequestAbort } from './pipeline/abort';
import { httpSteps, runPipeline, upgradeSteps } from './pipeline';
import { finish } from './pipeline/finish';
import { answerNow, answerUnparsed } from './pipeline/answer';
import { inFlight as inFlightGauge } from './metrics/registry';
import type { Runtime } from './runtime';

// A server-to-client WebSocket close frame (unmasked): FIN + opcode 8, 2-byte payload, status 1001.
const WEBSOCKET_CLOSE_GOING_AWAY = Buffer.from([0x88, 0x02, 0x03, 0xe9]);
// Once our side of a connection is closed, how long the client gets to read the answer and close its side.
const LINGER_MS = 2000;

/** The public listener: hands every request and upgrade to the pipeline, and knows what is in flight. */
export class GatewayServer {
  readonly http: http.Server;
  private inFlight = 0;
  private readonly upgrades = new Set<Extract<Reply, { kind: 'upgrade' }>>();
  /** Connections whose framing was refused: what follows on them is not a request, whatever node parsed. */
  private readonly refusedConnections = new WeakSet<Duplex>();
  /** The request in flight on each connection, for a parse error in its body (onClientError). */
  private readonly inFlightOn = new WeakMap<Duplex, RequestContext>();
  private closing = false;
  /** listen.max_header_count: header lines a request may carry (restart-only, like the listener). */
  private readonly maxHeaderCount: number;

  constructor(private readonly getRuntime: () => Runtime) {
    const { config, log } = getRuntime();
    const { listen } = config;
    this.maxHeaderCount = listen.max_header_count;
    // Slow clients cannot hold a request open forever (slowloris); bodies stream under the route's timeout.
    // A TLS handshake gets as long as a client gets to send its headers: both are slowloris' time.
    this.http = createListener({ ...requestLimits(listen), keepAliveTimeout: 5_000 }, listen.tls, listen.headers_timeout, log);
    // Node keeps only the first maxHeadersCount lines and drops the rest silently: one more than we
    // accept is kept, so a request past our count is seen to be (headerCountError) and refused.
    this.http.maxHeadersCount = listen.max_header_count + 1;
    this.http.on(connectionEvent(this.http), (socket: Duplex) => lingerAfterEnd(socket));
    this.http.on('request', (req, res) => this.onRequest(req, res));
    // An expectation other than 100-continue is ignored (RFC 9110 §10.1.1 allows it), not a bare 417.
    this.http.on('checkExpectation', (req, res) => this.onRequest(req, res));
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.http.on('connect', (req, socket, head) => this.onConnect(req, socket, head));
    this.http.on('clientError', (err, socket) => this.onClientError(err as NodeJS.ErrnoException, socket));
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve((this.http.address() as { port: number }).port);
      });
    });
  }

  /** A reload's renewed certificate files: read now (throws when unusable); the returned function applies them. */
  prepareRenewal(tls: Runtime['config']['listen']['tls']): () => void {
    return prepareRenewal(this.http, tls);
  }

  private newContext(req: IncomingMessage, reply: Reply): RequestContext {
    // Every field from the start, so every request's context has one shape (V8 keeps the steps' property reads monomorphic).
    return {
      req,
      reply,
      runtime: this.getRuntime(),
      startedAt: performance.now(),
      abort: new RequestAbort(),
      requestId: '',
      clientAddress: '',
      path: '',
      query: '',
      route: undefined,
      apiKey: undefined,
      consumer: undefined,
      anonymous: undefined,
      responseHeaders: {},
      giveBackSlot: undefined,
      upstreamTarget: undefined,
      status: undefined,
      error: undefined,
      handled: undefined,
    };
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    // Left unanswered: node closes the connection after the refusal before it.
    if (this.refusedConnections.has(req.socket) || isLingering(req.socket)) return;
    const ctx = this.newContext(req, { kind: 'http', res });
    const malformed = this.headError(req);
    if (malformed) return this.refuse(ctx, malformed);
    const cap = ctx.runtime.config.listen.max_in_flight;
    if (cap > 0 && this.inFlight >= cap) {
      // Shedding: a fast 503 now beats a slow answer for everyone (latency collapse) later.
      return answerNow(ctx, shedding(), { linger: true });
    }
    this.inFlight++;
    inFlightGauge.inc();
    this.inFlightOn.set(req.socket, ctx);
    // While draining, every answer tells the client not to reuse the connection.
    if (this.closing) res.shouldKeepAlive = false;
    res.on('close', () => {
      if (!res.writableFinished) ctx.abort.abort();
    });
    void runPipeline(ctx, httpSteps, (done) => {
      this.inFlight--;
      inFlightGauge.dec();
      if (this.inFlightOn.get(req.socket) === done) this.inFlightOn.delete(req.socket);
      finish(done);
    });
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.refusedConnections.has(socket)) return void socket.destroy();
    const reply = { kind: 'upgrade' as const, socket, head };
    const ctx = this.newContext(req, reply);
    socket.on('error', () => ctx.abort.abort());
    const malformed = this.headError(req);
    if (malformed) return this.refuse(ctx, malformed);
    socket.once('close', () => {
      ctx.abort.abort();
      this.upgrades.delete(reply);
    });
    this.upgrades.add(reply);
    void runPipeline(ctx, upgradeSteps, finish);
  }

  /** CONNECT asks for a tunnel, a forward proxy's job: an envelope rather than node's silent close. */
  private onConnect(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy()); // node hands the socket over without an error listener
    const refusal = new GatewayError('invalid_request', { message: 'CONNECT is not supported: this gateway does not open tunnels.' });
    this.refuse(this.newContext(req, { kind: 'upgrade', socket, head }), refusal);
  }

  /**
   * Why the request's head must be refused before any step looks at it: too many lines first (then
   * the rest is incomplete), its framing and Host, an upgrade that is not a WebSocket handshake.
   */
  private headError(req: IncomingMessage): GatewayError | undefined {
    return headerCountError(req, this.maxHeaderCount) ?? framingError(req) ?? upgradeError(req);
  }

  /** A refusal of the connection's framing: answered at once, and nothing after it on the connection is served. */
  private refuse(ctx: RequestContext, err: GatewayError): void {
    this.refusedConnections.add(ctx.req.socket);
    answerNow(ctx, err, { linger: false });
  }

  /** Requests node's parser refused: answer with an envelope if the socket still can take one. */
  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    // Already answered with Connection: close (a refusal): node closes the connection once it is out.
    if (this.refusedConnections.has(socket) || isLingering(socket as Socket)) return;
    const inFlight = this.inFlightOn.get(socket);
    if (inFlight && err.code !== 'ECONNRESET' && inFlight.reply.kind === 'http' && !inFlight.reply.res.headersSent && !inFlight.req.complete) {
      // Its own body broke (a bad chunk, cut short): the pipeline answers 400 and closes, as node would
      // answer a bare 400; the upstream request, if any, is abandoned.
      inFlight.abort.abort(BODY_MALFORMED);
      return;
    }
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight) {
      socket.destroy();
      return;
    }
    answerUnparsed(this.getRuntime(), socket, parserRefusal(err), err.code);
  }

  /** Drain, step 1: stop accepting; answers from now on close their connections. */
  stopAccepting(): void {
    this.closing = true;
    this.http.close();
    this.http.closeIdleConnections();
  }

  /** Drain, step 2: wait for requests in flight and open WebSockets, up to `graceMs`. True when all ended. */
  async waitForInFlight(graceMs: number): Promise<boolean> {
    const deadline = Date.now() + graceMs;
    const busy = () => this.inFlight > 0 || this.upgrades.size > 0;
    while (busy() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      this.http.closeIdleConnections();
    }
    return !busy();
  }

  /** Drain, step 3: whatever is left is cut; WebSockets get a close frame with 1001 ("going away") first. */
  closeAllConnections(): void {
    this.http.closeAllConnections();
    for (const { socket, upstream } of this.upgrades) {
      if (upstream) {
        upstream.unpipe(socket); // no upstream bytes may land after (or inside) our frame
        upstream.destroy();
        socket.end(WEBSOCKET_CLOSE_GOING_AWAY);
        setTimeout(() => socket.destroy(), 1000).unref();
      } else {
        socket.destroy();
      }
    }
  }
}

/**
 * Once our side of a connection is closed (an answer with Connection: close, a refusal, an idle
 * keep-alive), a client that never closes its side would hold the socket, and a file descriptor,
 * for good. It gets LINGER_MS to read what we sent; then the connection is cut.
 */
function lingerAfterEnd(socket: Duplex): void {
  socket.once('finish', () => {
    if (isLingering(socket as Socket)) return; // reading the rest of a refused body: its own timer
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  });
}

function shedding(): GatewayError {
  return serviceUnavailable({ message: 'The gateway is at capacity. Please try again shortly.' });
}
