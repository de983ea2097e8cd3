// Redis clients for the one call the hot path makes: the floor (bare undici + SHA-256 + one EVALSHA of
// sluice's sliding-window script, two windows) through ioredis 6 with auto-pipelining (the floor's own
// client), and through node-redis 5 (@redis/client, what sluice uses) and 6, each with its own per-tick
// pipelining — the same process otherwise. Why sluice moved to node-redis 5 (issue #16).
import { createRequire } from 'node:module';
import { withGroup } from '../lib/procs.mjs';
import { fmtCommands, startRedis } from '../lib/redis.mjs';
import { BENCH_KEY, startFloor, startUpstream } from '../lib/servers.mjs';
import { fixed, int, ms, plural, ratio, table } from '../lib/report.mjs';
import { runRounds } from '../lib/rounds.mjs';

export const title = 'Redis clients: ioredis vs node-redis for the floor’s EVALSHA';

const require = createRequire(import.meta.url);
const version = (name) => require(`${name}/package.json`).version;

export async function run(settings) {
  return withGroup(async (group) => {
    const upstream = await startUpstream(group);
    const redis = await startRedis(group);
    const clients = [
      ['ioredis', `ioredis ${version('ioredis')} (auto-pipelining)`],
      ['node-redis-5', `node-redis ${version('@redis/client')} (@redis/client, as sluice uses it)`],
      ['node-redis', `node-redis ${version('redis')}`],
    ];
    const cases = [];
    for (const [client, name] of clients) {
      const floor = await startFloor(group, upstream, redis, [], client);
      cases.push({ name: `floor through ${name}`, pid: floor.pid, load: { url: floor.url, requests: [{ headers: { 'x-api-key': BENCH_KEY } }] }, redis, windows: 2 });
    }
    const results = await runRounds({ ...settings, label: 'clients' }, cases);
    const [io] = results;
    const markdown = [
      `${settings.connections} connections, ${settings.seconds} s per case × ${plural(settings.rounds, 'round')} (medians): the floor proxy, ` +
        'only its Redis client changed (load-tests/floor-proxy.mjs, REDIS_CLIENT).',
      '',
      table(
        ['client', 'req/s', 'p50 ms', 'p99 ms', 'req/s × ioredis', 'proxy CPU µs/req', 'CPU × ioredis', 'Redis calls per request', 'errors', 'non-2xx'],
        results.map((r) => [
          r.name,
          int(r.rps),
          ms(r.p50),
          ms(r.p99),
          ratio(r.rps, io.rps),
          fixed(r.cpuUsPerReq),
          ratio(r.cpuUsPerReq, io.cpuUsPerReq),
          fmtCommands(r.redis.direct),
          int(r.errors),
          int(r.non2xx),
        ]),
      ),
    ].join('\n');
    return { markdown, targets: [], results };
  });
}
