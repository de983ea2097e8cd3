/**
 * `run()`, or a rejection once `ms` have passed (undefined: no deadline). ioredis' commandTimeout
 * alone does not bound a request-path call:
 * - with auto-pipelining only one pipeline is in flight per connection (per slot in a Cluster), and a
 *   command's timer starts only when its pipeline is sent; while Redis is frozen a command queued
 *   behind one in flight waits out that one's timeout before its own (seen: 1-2 s for a 500 ms timeout);
 * - a Cluster client retries a command whose master just died (slot refresh, up to maxRedirections ×
 *   the retry delay): seconds, until a replica is promoted.
 */
export function withDeadline<T>(ms: number | undefined, run: () => Promise<T>): Promise<T> {
  if (ms === undefined) return run();
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    run().then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
