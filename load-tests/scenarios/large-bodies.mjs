// Large bodies streamed: 1 MiB POST bodies echoed back by the upstream, and 10 MiB downloads, through
// sluice and through the bare undici proxy (which streams bodies the same way), alternating.
import { withGroup } from '../lib/procs.mjs';
import { startRedis } from '../lib/redis.mjs';
import { BENCH_KEY, startBareUndici, startSluice, startUpstream } from '../lib/servers.mjs';
import { fixed, int, ms, ratio, table, target, plural } from '../lib/report.mjs';
import { runRounds } from '../lib/rounds.mjs';

export const title = 'Large bodies: 1 MiB echo and 10 MiB download';

const MiB = 1024 * 1024;
const CONNECTIONS = 10; // 10 × 10 MiB in flight is plenty to fill the pipe on one core

export async function run(settings) {
  return withGroup(async (group) => {
    const upstream = await startUpstream(group);
    const redis = await startRedis(group);
    const undici = await startBareUndici(group, upstream);
    const sluice = await startSluice(group, { upstream, redis });
    const echo = { method: 'POST', path: '/echo', headers: { 'content-type': 'application/octet-stream' }, bodyBytes: MiB };
    const download = { path: `/bytes/${10 * MiB}` };
    const withKey = (r) => ({ ...r, headers: { ...r.headers, 'x-api-key': BENCH_KEY } });
    const cases = [
      { name: 'bare undici: 1 MiB echo', pid: undici.pid, load: { url: undici.url, requests: [echo] }, size: MiB },
      { name: 'sluice: 1 MiB echo', pid: sluice.pid, load: { url: sluice.url, requests: [withKey(echo)] }, size: MiB },
      { name: 'bare undici: 10 MiB download', pid: undici.pid, load: { url: undici.url, requests: [download] }, size: 10 * MiB },
      { name: 'sluice: 10 MiB download', pid: sluice.pid, load: { url: sluice.url, requests: [withKey(download)] }, size: 10 * MiB },
    ];
    const results = await runRounds({ ...settings, label: 'large-bodies' }, cases, { rounds: settings.sideRounds, connections: CONNECTIONS });
    // Every answer must have carried the whole body (headers come on top), or the MiB/s mean nothing.
    results.forEach((r, i) => {
      if (r.bytesPerReq < cases[i].size) throw new Error(`${r.name}: answers carried ${Math.round(r.bytesPerReq)} bytes on average, expected ≥ ${cases[i].size}`);
    });
    // MiB/s of body per direction: requests/s × body size (the echo moves as much again the other way).
    const mibps = results.map((r, i) => (r.rps * cases[i].size) / MiB);
    const markdown = [
      `${CONNECTIONS} connections, ${settings.seconds} s per case × ${plural(settings.sideRounds, 'round')}. MiB/s counts the body once (an echo moves as much again upstream).`,
      '',
      table(
        ['case', 'req/s', 'MiB/s', '× bare undici', 'p50 ms', 'p99 ms', 'proxy CPU µs/MiB', 'errors', 'non-2xx'],
        results.map((r, i) => [
          r.name, fixed(r.rps, 1), fixed(mibps[i], 0), i % 2 ? ratio(mibps[i], mibps[i - 1]) : '1.00×', ms(r.p50), ms(r.p99),
          fixed((r.cpuUsPerReq * MiB) / cases[i].size, 0), int(r.errors), int(r.non2xx),
        ]),
      ),
    ].join('\n');
    const targets = [
      target('1 MiB echo through sluice vs bare undici (MiB/s)', ratio(mibps[1], mibps[0]), null),
      target('10 MiB download through sluice vs bare undici (MiB/s)', ratio(mibps[3], mibps[2]), null),
    ];
    return { markdown, targets };
  });
}
