import { Pool, type Dispatcher } from 'undici';

export type RequestOptions = Parameters<Pool['request']>[0] & {
  /** Called when the request leaves the pool's queue for a connection. */
  onDispatch?: () => void;
};

/** Something to call request() on, like the pool itself. */
export interface WatchedDispatcher {
  request(options: RequestOptions): ReturnType<Pool['request']>;
}

/**
 * `pool`, as far as request() goes, but telling each request (`onDispatch`) when it leaves the
 * pool's queue for a connection. Until then an aborted request stays queued and its promise
 * unsettled, and the upstream has not seen it: a timeout there is the pool's saturation, not the
 * upstream's slowness, and must not count against its breaker. (A plain object rather than
 * pool.compose(): its Proxy and two handler layers cost every request.)
 */
export function watchDispatch(pool: Pool): WatchedDispatcher {
  return {
    dispatch(options: RequestOptions, handler: Dispatcher.DispatchHandler): boolean {
      const { onDispatch } = options;
      const onConnect = handler.onConnect;
      if (onDispatch && onConnect) {
        // request()'s own handler (the legacy API): told first thing once a connection takes it.
        handler.onConnect = (abort, context?: unknown) => {
          onDispatch();
          return (onConnect as (abort: unknown, context: unknown) => void).call(handler, abort, context);
        };
      }
      return pool.dispatch(options, handler);
    },
    request: Pool.prototype.request,
  } as WatchedDispatcher;
}
