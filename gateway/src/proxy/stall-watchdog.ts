/**
 * One shared check, every TICK_MS, of every exchange that could stall on its client: a request body
 * that stops arriving (listen.body_timeout) and an answer the client stops reading
 * (listen.send_timeout). One interval for all, instead of timers per request and per chunk: a stall
 * is noticed within a tick of its timeout, which is all a timeout of seconds needs.
 */
const TICK_MS = 500;

export interface Watch {
  /** Whether the exchange has stalled, as of `nowMs` (Date.now()); called once a tick. */
  stalled(nowMs: number): boolean;
  /** Called once, when it has: the watch is then dropped. */
  onStall(): void;
}

const watches = new Set<Watch>();
let ticker: NodeJS.Timeout | undefined;

function tick(): void {
  const now = Date.now();
  for (const watch of watches) {
    if (!watch.stalled(now)) continue;
    watches.delete(watch);
    watch.onStall();
  }
  if (watches.size === 0) {
    clearInterval(ticker);
    ticker = undefined;
  }
}

/** Watches until the returned function is called (or the watch fires). */
export function watchForStall(watch: Watch): () => void {
  watches.add(watch);
  if (!ticker) {
    ticker = setInterval(tick, TICK_MS);
    ticker.unref();
  }
  return () => watches.delete(watch);
}

/**
 * A writable (an answer to the client) that has data it cannot hand to the client, and has not
 * handed any for `timeoutMs`: the client stopped reading (nginx's send_timeout).
 */
export function sendStall(socket: { writableLength: number; bytesWritten: number }, timeoutMs: number): (nowMs: number) => boolean {
  let written = socket.bytesWritten;
  let progressAt = Date.now();
  return (now) => {
    if (socket.bytesWritten !== written || socket.writableLength === 0) {
      written = socket.bytesWritten;
      progressAt = now;
      return false;
    }
    return now - progressAt >= timeoutMs;
  };
}
