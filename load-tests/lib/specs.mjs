// What the diagnostic scripts (async-count, syscall-count, warm-up, perf-profile) share: the headline's
// upstream and Redis, then each build they were named, started and handed over in turn.
import { withGroup } from './procs.mjs';
import { startRedis } from './redis.mjs';
import { headlineLoad, startSpec, startUpstream } from './servers.mjs';

/**
 * Starts the headline's upstream and Redis, then each spec (`floor` or a checkout: servers.mjs
 * startSpec) one after the other, and calls `body({ spec, i, proc, load })` for it (load: the
 * headline's). Everything is stopped at the end, also when `body` throws.
 */
export function forEachSpec(specs, { nodeArgs = [], level = 'info' }, body) {
  return withGroup(async (group) => {
    const upstream = await startUpstream(group);
    const redis = await startRedis(group);
    for (const [i, spec] of specs.entries()) {
      const proc = await startSpec(group, spec, { upstream, redis, name: `case-${i}`, nodeArgs, level });
      await body({ spec, i, proc, load: headlineLoad(proc) });
    }
  });
}
