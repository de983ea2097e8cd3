// `sluice serve --workers 2` against one process, on this machine. The bench usually pins the proxy
// under test to core 0 and the upstream, Redis and the load generator to core 1; two workers pinned
// to one core would only share it, so the workers case gets both cores (taskset -c 0,1), and so does
// a one-process case, to show what the second core alone gives without workers. CPU per request is
// the whole process tree's (the primary, which accepts and hands out connections, and its workers).
import os from 'node:os';
import { CORE, pinning, withGroup } from '../lib/procs.mjs';
import { startRedis } from '../lib/redis.mjs';
import { BENCH_KEY, startSluice, startUpstream } from '../lib/servers.mjs';
import { fixed, int, ms, plural, ratio, table } from '../lib/report.mjs';
import { runRounds } from '../lib/rounds.mjs';

export const title = 'Workers: serve --workers 2 vs one process';

const BOTH_CORES = `${CORE.proxy},${CORE.helpers}`;

export async function run(settings) {
  return withGroup(async (group) => {
    const upstream = await startUpstream(group);
    const redis = await startRedis(group);
    const single = await startSluice(group, { upstream, redis, name: 'sluice-1' });
    const singleBoth = await startSluice(group, { upstream, redis, name: 'sluice-1-both-cores', core: BOTH_CORES });
    const workers = await startSluice(group, { upstream, redis, name: 'sluice-2-workers', core: BOTH_CORES, args: ['--workers', '2'] });

    const load = (s) => ({ url: s.url, requests: [{ headers: { 'x-api-key': BENCH_KEY } }] });
    const cases = [
      { name: `1 process, core ${CORE.proxy}`, pid: single.pid, tree: true, load: load(single) },
      { name: `1 process, cores ${BOTH_CORES}`, pid: singleBoth.pid, tree: true, load: load(singleBoth) },
      { name: `--workers 2 (primary + 2 workers), cores ${BOTH_CORES}`, pid: workers.pid, tree: true, load: load(workers) },
    ];
    const results = await runRounds({ ...settings, label: 'workers' }, cases);
    const [one] = results;

    const markdown = [
      `${settings.connections} connections, ${settings.seconds} s per case × ${plural(settings.rounds, 'round')} (medians), GET / with the cached key ` +
        `(Redis, 2 windows, access log off), on ${os.availableParallelism()} cores. Pinning: ${pinning}; here the cases say which cores sluice had. ` +
        `With both cores, sluice shares core ${CORE.helpers} with the load generator, the upstream and Redis, so this compares what an ` +
        `operator gets on this machine, not a clean doubling.`,
      '',
      table(
        ['case', 'req/s', 'p50 ms', 'p99 ms', 'req/s × 1 process on one core', 'CPU µs/req (all its processes)', 'load gen CPU %', 'errors', 'non-2xx'],
        results.map((r) => [r.name, int(r.rps), ms(r.p50), ms(r.p99), ratio(r.rps, one.rps), fixed(r.cpuUsPerReq), fixed(r.loadCpuPct, 0), int(r.errors), int(r.non2xx)]),
      ),
    ].join('\n');
    return { markdown, targets: [], results };
  });
}
