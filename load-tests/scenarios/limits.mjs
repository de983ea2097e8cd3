// What the limits beyond a tier's windows cost (issue 17): the same sluice answers the headline's
// plain two-window tier and a tier with the same two windows plus an account window and a monthly
// quota (a key with an account), and one with a concurrency limit, alternating. Both are decided in one script call; the target is
// ≤ 10 % more CPU per request for the richer tier, and the round trips per request of each.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { withGroup } from '../lib/procs.mjs';
import { fmtCommands, startRedis } from '../lib/redis.mjs';
import { BENCH_KEY, OPEN_TIER, ROOT, startSluice, startUpstream } from '../lib/servers.mjs';
import { fixed, int, ms, ratio, table, target, plural } from '../lib/report.mjs';
import { runRounds } from '../lib/rounds.mjs';

export const title = 'Limits: account windows and a calendar quota vs the plain tier';

/** The richer tier: the open tier's two windows, an account window and a monthly quota, none ever reached. */
const METERED_TIER = {
  ...OPEN_TIER,
  account_limits: [{ requests: 1_000_000_000, per: '1m' }],
  quota: { requests: 1_000_000_000_000, per: 'month' },
};

/** The plain tier with a concurrency limit (never reached): a slot taken in the script, given back after. */
const SLOTTED_TIER = { ...OPEN_TIER, concurrency: 1_000_000 };
const SLOTTED_KEY = 'sk_bench_slotted_0123456789ab';

/** A key of `tier` in `account`, made as an operator would (sluice keys create), its plaintext returned. */
function createKey(configFile, tier, account) {
  const made = spawnSync(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'keys', 'create', '--config', configFile, '--tier', tier, '--name', `bench-${tier}`, '--account', account, '--json'], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`sluice keys create failed: ${made.stderr || made.stdout}`);
  return JSON.parse(made.stdout).key;
}

export async function run(settings) {
  return withGroup(async (group) => {
    const upstream = await startUpstream(group);
    const redis = await startRedis(group);
    const sluice = await startSluice(group, { upstream, redis, config: { tiers: { metered: METERED_TIER, slotted: SLOTTED_TIER }, keys: [{ name: 'slotted', tier: 'slotted', key: SLOTTED_KEY }] } });
    const meteredKey = createKey(sluice.configFile, 'metered', 'acme');
    const c = (name, key, windows, quotas = 0) => ({ name, pid: sluice.pid, load: { url: sluice.url, requests: [{ headers: { 'x-api-key': key } }] }, redis, windows, quotas });
    const cases = [
      c('plain tier: 2 windows', BENCH_KEY, 2),
      // In-script: an HGETALL for each of the 2 key windows and the account window, a GET of the quota counter.
      c('2 windows + account window + monthly quota', meteredKey, 3, 1),
      // One more round trip: the slot's release (ZREM, auto-pipelined) when the answer ends.
      c('2 windows + a concurrency limit', SLOTTED_KEY, 2),
    ];
    const results = await runRounds({ ...settings, label: 'limits' }, cases, { rounds: settings.sideRounds });
    const [plain, metered, slotted] = results;
    const markdown = [
      `${settings.connections} connections, ${settings.seconds} s per case × ${plural(settings.sideRounds, 'round')}, one sluice (access log off), cached keys, limits never reached.`,
      '',
      table(
        ['case', 'req/s', 'p50 ms', 'p99 ms', 'sluice CPU µs/req', '× plain CPU', 'Redis round trips/req', 'direct commands/req', 'in-script/req', 'non-2xx', 'errors'],
        results.map((r) => [
          r.name, int(r.rps), ms(r.p50), ms(r.p99), fixed(r.cpuUsPerReq), ratio(r.cpuUsPerReq, plain.cpuUsPerReq), r.redis.roundTrips.toFixed(3),
          fmtCommands(r.redis.direct), fmtCommands(r.redis.inScript), int(r.non2xx), int(r.errors),
        ]),
      ),
    ].join('\n');
    const targets = [
      target('account window + monthly quota: ≤ 1.10× the plain tier\'s CPU per request', ratio(metered.cpuUsPerReq, plain.cpuUsPerReq), metered.cpuUsPerReq <= 1.1 * plain.cpuUsPerReq),
      target('Redis round trips per request, plain tier / account + quota: 1', `${plain.redis.roundTrips.toFixed(3)} / ${metered.redis.roundTrips.toFixed(3)}`, Math.max(plain.redis.roundTrips, metered.redis.roundTrips) < 1.01),
      target('Redis round trips per request with a concurrency limit: 2 (decide, give back)', slotted.redis.roundTrips.toFixed(3), Math.abs(slotted.redis.roundTrips - 2) < 0.02),
      target('a concurrency limit: CPU per request × the plain tier', ratio(slotted.cpuUsPerReq, plain.cpuUsPerReq), null),
    ];
    return { markdown, targets, results };
  });
}
