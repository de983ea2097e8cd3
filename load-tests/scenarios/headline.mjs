// The headline: the same tiny GET through each proxy, alternating over rounds —
// bare undici (baseline), bare http-proxy (baseline), sluice with Redis (cached key, two windows that
// are never reached: the full path), and nginx when installed.
import { withGroup } from '../lib/procs.mjs';
import { fmtCommands, startRedis } from '../lib/redis.mjs';
import { BENCH_KEY, startBareHttpProxy, startBareUndici, startFloor, startNginx, startSluice, startUpstream } from '../lib/servers.mjs';
import { fixed, int, ms, ratio, table, target, plural } from '../lib/report.mjs';
import { runRounds } from '../lib/rounds.mjs';

export const title = 'Headline: proxy overhead';

export async function run(settings) {
  return withGroup(async (group) => {
    const upstream = await startUpstream(group);
    const redis = await startRedis(group);
    const undici = await startBareUndici(group, upstream);
    const httpProxy = await startBareHttpProxy(group, upstream);
    const floor = await startFloor(group, upstream, redis);
    // As a user runs it: the access log on, at the default level (info). And with it off, to show its cost.
    const sluice = await startSluice(group, { upstream, redis, config: { log: { level: 'info' } } });
    const quiet = await startSluice(group, { upstream, redis, name: 'sluice-quiet' });
    const nginx = await startNginx(group, upstream);

    const cases = [
      { name: 'bare undici proxy', pid: undici.pid, load: { url: undici.url } },
      { name: 'bare http-proxy', pid: httpProxy.pid, load: { url: httpProxy.url } },
      { name: 'floor (bare undici + SHA-256 + one EVALSHA)', pid: floor.pid, load: { url: floor.url, requests: [{ headers: { 'x-api-key': BENCH_KEY } }] } },
      { name: 'sluice (Redis, cached key, 2 windows, access log on)', pid: sluice.pid, load: { url: sluice.url, requests: [{ headers: { 'x-api-key': BENCH_KEY } }] }, redis, windows: 2 },
      { name: 'sluice, access log off', pid: quiet.pid, load: { url: quiet.url, requests: [{ headers: { 'x-api-key': BENCH_KEY } }] }, redis, windows: 2 },
    ];
    if (nginx) cases.push({ name: `nginx (keepalive upstream)`, pid: nginx.pid, load: { url: nginx.url } });
    const results = await runRounds({ ...settings, label: 'headline' }, cases);
    const [u, h, f, s, q] = results;

    const markdown = [
      `${settings.connections} connections, ${settings.seconds} s per case × ${plural(settings.rounds, 'round')} (medians of the rounds, CPU per request included), GET / → a 16-byte JSON answer.`,
      '',
      table(
        ['case', 'req/s', 'p50 ms', 'p99 ms', '× bare undici', '× bare http-proxy', 'req/s × floor', 'proxy CPU µs/req', 'CPU × floor', 'load gen CPU %', 'errors', 'non-2xx'],
        results.map((r) => [
          r.name,
          int(r.rps),
          ms(r.p50),
          ms(r.p99),
          ratio(r.rps, u.rps),
          ratio(r.rps, h.rps),
          ratio(r.rps, f.rps),
          fixed(r.cpuUsPerReq),
          ratio(r.cpuUsPerReq, f.cpuUsPerReq),
          fixed(r.loadCpuPct, 0),
          int(r.errors),
          int(r.non2xx),
        ]),
      ),
      '',
      `Redis per proxied request through sluice: **${s.redis.roundTrips.toFixed(3)} round trips** (${fmtCommands(s.redis.direct)}); ` +
        `run inside the script: ${fmtCommands(s.redis.inScript)}.`,
    ].join('\n');
    const targets = [
      target('sluice (access log on) CPU per request ≤ 1.25× the floor', ratio(s.cpuUsPerReq, f.cpuUsPerReq), s.cpuUsPerReq <= 1.25 * f.cpuUsPerReq),
      target('sluice (access log on) ≥ 0.8× the floor (req/s)', ratio(s.rps, f.rps), s.rps >= 0.8 * f.rps),
      target('sluice (access log on) ≥ 0.5× bare undici (req/s)', ratio(s.rps, u.rps), s.rps >= 0.5 * u.rps),
      target(`sluice p99 ≤ 1.5× the floor's p99 (${settings.connections} connections)`, `${ms(s.p99)} vs ${ms(f.p99)} ms`, s.p99 <= 1.5 * f.p99),
      target('sluice, access log off: CPU per request × the floor', ratio(q.cpuUsPerReq, f.cpuUsPerReq), null),
      target('sluice (access log on): CPU pooled over all rounds (not medians) × the floor', ratio(s.cpuUsPerReqPooled, f.cpuUsPerReqPooled), null),
      target('Redis round trips per proxied request = 1.0 (cached key)', s.redis.roundTrips.toFixed(3), Math.abs(s.redis.roundTrips - 1) < 0.01),
    ];
    return { markdown, targets, results };
  });
}
