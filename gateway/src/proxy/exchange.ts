import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { util, type Dispatcher } from 'undici';
import type { RequestAbort } from '../pipeline/abort';
import { sendStall, watchForStall } from './stall-watchdog';

/** The head of the upstream's answer. */
export interface UpstreamHead {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
}

/** How much of an answer's body is held before the relay starts; past it the upstream is paused. */
const HOLD_BYTES = 64 * 1024;

type Abort = (reason?: Error) => void;

/**
 * One attempt at an upstream through undici's dispatch() with a handler of our own: the answer's body
 * goes straight into the client's response (res.write), with no Readable and no pipe() between them
 * (on the headline request, request() and pipe() cost 13 of sluice's 86 µs: load-tests/ab.mjs).
 *
 * `head` settles with the answer's status and headers, or with why there is none: undici's error, or
 * the signal's reason as soon as it aborts — undici leaves an aborted request in the pool's queue
 * until a connection frees up, and the caller must not wait for that. Then `relay()` (or `discard()`)
 * takes the body; what arrives before that is held, so nothing is lost in between.
 */
export class UpstreamExchange {
  readonly head: Promise<UpstreamHead>;
  /** A connection took the request: it left the pool's queue, and the upstream has seen it. */
  dispatched = false;
  private settleHead?: { resolve: (head: UpstreamHead) => void; reject: (err: unknown) => void };
  private abortUpstream?: Abort;
  private resumeUpstream?: () => void;
  private paused = false;
  /** Body chunks that came before the relay started. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  private ended = false;
  /** Why the body failed after the head, if it did. */
  private failure?: Error;
  /** Where the body goes once the relay started. */
  private sink?: Sink;

  constructor(
    private readonly signal: RequestAbort,
    /** The request's body: destroyed if the exchange fails, as undici's request() does. */
    private readonly body: Buffer | Readable | null,
  ) {
    this.head = new Promise((resolve, reject) => (this.settleHead = { resolve, reject }));
    if (signal.aborted) this.onAbort();
    else signal.on('abort', this.onAbort); // aborts once: no need for once()'s wrapper
  }

  private readonly onAbort = (): void => {
    const reason = this.signal.reason;
    this.rejectHead(reason);
    this.abortUpstream?.(reason instanceof Error ? reason : new Error('aborted')); // else when a connection takes it
  };

  private rejectHead(err: unknown): void {
    const settle = this.settleHead;
    if (!settle) return;
    this.settleHead = undefined;
    this.signal.off('abort', this.onAbort);
    settle.reject(err);
  }

  // undici's dispatch handler (the API its core calls directly; the newer one goes through a wrapper).

  onConnect(abort: Abort): void {
    this.dispatched = true;
    this.abortUpstream = abort;
    if (this.signal.aborted) this.onAbort(); // it was given up on while queued
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // a 1xx is not the answer
    const settle = this.settleHead;
    if (!settle) return false; // given up on (aborted): undici is told so already
    this.settleHead = undefined;
    this.resumeUpstream = resume;
    settle.resolve({ statusCode, headers: util.parseHeaders(rawHeaders) as UpstreamHead['headers'] });
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.sink) return this.keepGoing(this.sink.write(chunk));
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    return this.keepGoing(this.heldBytes < HOLD_BYTES);
  }

  onComplete(): void {
    this.ended = true;
    this.signal.off('abort', this.onAbort);
    this.sink?.end();
  }

  onError(err: Error): void {
    if (this.settleHead) {
      this.rejectHead(err);
    } else {
      this.signal.off('abort', this.onAbort);
      this.failure = err;
      this.sink?.fail(err);
    }
    if (this.body && !Buffer.isBuffer(this.body) && !this.body.destroyed) this.body.on('error', () => undefined).destroy(err);
  }

  /** Whether undici may read on: false pauses it until the client took what it has. */
  private keepGoing(more: boolean): boolean {
    this.paused = !more;
    return more;
  }

  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.resumeUpstream?.();
  }

  /**
   * Sends the body to the client and ends the answer. Resolves with the upstream's error if its body
   * failed; the client connection is then cut, the only honest signal once headers are sent. A client
   * that goes away, or stops reading for `sendTimeoutMs` (listen.send_timeout), is cut and stops the
   * upstream too, which frees its connection. `beforeEnd` (giving back a concurrency slot) runs once
   * the body is in, before the answer ends.
   */
  relay(res: ServerResponse, sendTimeoutMs: number, beforeEnd?: () => void | Promise<void>): Promise<Error | undefined> {
    return new Promise((resolve) => {
      const socket = res.socket;
      const unwatch = socket ? watchForStall({ stalled: sendStall(socket, sendTimeoutMs), onStall: () => res.destroy() }) : () => undefined;
      res.on('close', () => {
        unwatch();
        resolve(undefined);
        if (!this.ended && !this.failure) this.abortUpstream?.(new Error('the client went away'));
      });
      res.on('drain', () => this.resume());
      this.start({
        write: (chunk) => res.write(chunk),
        end: () => {
          if (beforeEnd) void Promise.resolve(beforeEnd()).then(() => res.end());
          else res.end();
        },
        fail: (err) => {
          unwatch();
          res.destroy();
          resolve(err);
        },
      });
    });
  }

  /** Lets undici finish (or drop) the exchange without relaying anything; `onFailure` hears of a body that failed it. */
  discard(onFailure: (err: Error) => void): void {
    this.start({ write: () => true, end: () => undefined, fail: onFailure });
  }

  /** Hands what was held to `sink`, then what comes. */
  private start(sink: Sink): void {
    this.sink = sink;
    const held = this.held;
    this.held = [];
    let more = true;
    for (const chunk of held) more = sink.write(chunk);
    if (this.failure) return sink.fail(this.failure);
    if (this.ended) return sink.end();
    if (more) this.resume();
  }
}

interface Sink {
  /** false: the client is full; undici waits for its 'drain'. */
  write(chunk: Buffer): boolean;
  end(): void;
  fail(err: Error): void;
}

/** Sends the request on `pool` with the exchange as its handler. */
export function dispatchExchange(pool: Dispatcher, options: Dispatcher.DispatchOptions, exchange: UpstreamExchange): void {
  pool.dispatch(options, exchange as unknown as Dispatcher.DispatchHandler);
}
