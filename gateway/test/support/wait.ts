import { performance } from 'node:perf_hooks';

/**
 * Polls `check` every 10 ms until it holds; resolves with the ms it took (from `since`), rejects
 * after `timeoutMs` naming `what`. A check that throws counts as not yet.
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  { what = 'condition', since = performance.now() }: { what?: string; since?: number } = {},
): Promise<number> {
  for (;;) {
    if (await Promise.resolve().then(check).catch(() => false)) return performance.now() - since;
    if (performance.now() - since > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
