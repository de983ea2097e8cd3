import { performance } from 'node:perf_hooks';

/**
 * Polls `check` every `intervalMs` (10 ms) until it holds; resolves with the ms it took (from
 * `since`), rejects after `timeoutMs` naming `what`. A check that throws counts as not yet.
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  { what = 'condition', since = performance.now(), intervalMs = 10 }: { what?: string; since?: number; intervalMs?: number } = {},
): Promise<number> {
  for (;;) {
    if (await Promise.resolve().then(check).catch(() => false)) return performance.now() - since;
    if (performance.now() - since > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * waitFor() for a check that names what is still wrong (undefined: nothing is): on timeout the last
 * problem is in the error, which is what one needs to see when a topology does not form.
 */
export async function waitForNoProblem(what: string, timeoutMs: number, check: () => Promise<string | undefined>, intervalMs = 100): Promise<void> {
  let problem: string | undefined = 'not checked yet';
  const noProblem = async () => {
    problem = await check().catch((err: unknown) => (err instanceof Error ? err.message : String(err))); // e.g. a node still starting up
    return problem === undefined;
  };
  await waitFor(noProblem, timeoutMs, { what, intervalMs }).catch(() => {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${problem}`);
  });
}
