// Rejections must be cheaper than proxying: the same sluice answers plain proxied GETs, 429s (a key
// whose tier allows 1 request a day, used up during warm-up), 413s (a 1 KiB POST to a route that takes
// 16 bytes; refused from its Content-Length before the key is even looked at — and, since the body is
// never read, on a connection that is then closed) and a rejection-heavy mix of all three.
import { withGroup } from '../lib/procs.mjs';
import { fmtCommands, startRedis } from '../lib/redis.mjs';
import { BENCH_KEY, startSluice, startUpstream } from '../lib/servers.mjs';
import { fixed, int, ms, ratio, table, target, plural } from '../lib/report.mjs';
import { runRounds } from '../lib/rounds.mjs';

export const title = 'Rejections: 429 and 413 vs proxied';

const TINY_KEY = 'sk_bench_tiny_limit_0123456789';

export async function run(settings) {
  return withGroup(async (group) => {
    const upstream = await startUpstream(group);
    const redis = await startRedis(group);
    const sluice = await startSluice(group, {
      upstream,
      redis,
      config: {
        tiers: { tiny: { limits: [{ requests: 1, per: '1d' }], scopes: ['*'] } },
        routes: [{ name: 'small', match: { path_prefix: '/small' }, upstream: 'app', max_body_bytes: 16 }],
        keys: [{ name: 'tiny', tier: 'tiny', key: TINY_KEY }],
      },
    });
    const ok = { headers: { 'x-api-key': BENCH_KEY } };
    const limited = { headers: { 'x-api-key': TINY_KEY } };
    const tooLarge = { method: 'POST', path: '/small', headers: { 'x-api-key': BENCH_KEY, 'content-type': 'application/octet-stream' }, bodyBytes: 1024 };
    // 1 proxied, 5 × 429, 4 × 413 in every 10 requests of a connection.
    const mix = [ok, limited, tooLarge, limited, tooLarge, limited, tooLarge, limited, tooLarge, limited];
    const c = (name, requests, windows) => ({ name, pid: sluice.pid, load: { url: sluice.url, requests }, redis, windows });
    const cases = [
      c('proxied: GET / → 200', [ok], 2),
      c('429: GET / over a 1-a-day limit', [limited], 1),
      c('413: POST /small, 1 KiB body, 16 B allowed', [tooLarge], 2),
      // HGETALLs run inside the script: 2 per proxied request (2 windows) + 1 per 429 (1 window), per 6 EVALSHAs.
      c('mix: 10 % 200, 50 % 429, 40 % 413', mix, 7 / 6),
    ];
    const results = await runRounds({ ...settings, label: 'rejections' }, cases, { rounds: settings.sideRounds });
    const [proxied, r429, r413, rMix] = results;

    const markdown = [
      `${settings.connections} connections, ${settings.seconds} s per case × ${plural(settings.sideRounds, 'round')}. A 413 closes its connection ` +
        '(the body is never read), so the load tool reconnects after each one: its cost includes a TCP accept.',
      '',
      table(
        ['case', 'req/s', 'p50 ms', 'p99 ms', 'sluice CPU µs/req', '× proxied CPU', 'Redis round trips/req', 'direct commands/req', 'in-script/req', 'non-2xx', 'errors'],
        results.map((r) => [
          r.name, int(r.rps), ms(r.p50), ms(r.p99), fixed(r.cpuUsPerReq), ratio(r.cpuUsPerReq, proxied.cpuUsPerReq), r.redis.roundTrips.toFixed(3),
          fmtCommands(r.redis.direct), fmtCommands(r.redis.inScript), int(r.non2xx), int(r.errors),
        ]),
      ),
    ].join('\n');
    const targets = [
      target('a 429 costs less CPU than a proxied request', `${fixed(r429.cpuUsPerReq)} vs ${fixed(proxied.cpuUsPerReq)} µs`, r429.cpuUsPerReq < proxied.cpuUsPerReq),
      target('a 413 costs less CPU than a proxied request', `${fixed(r413.cpuUsPerReq)} vs ${fixed(proxied.cpuUsPerReq)} µs`, r413.cpuUsPerReq < proxied.cpuUsPerReq),
      target('a 429 costs no more than one Redis round trip', r429.redis.roundTrips.toFixed(3), r429.redis.roundTrips <= 1.01),
      target('rejection-heavy mix: CPU per request', `${fixed(rMix.cpuUsPerReq)} µs (${ratio(rMix.cpuUsPerReq, proxied.cpuUsPerReq)} proxied)`, null),
    ];
    return { markdown, targets };
  });
}
