/**
 * `run()`, or a rejection once `ms` have passed (undefined: no deadline). A Cluster client retries a
 * command whose master just died (slot refresh, up to maxRedirections × the retry delay) past any one
 * command's timeout: seconds, until a replica is promoted. The request path must not wait that long.
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
