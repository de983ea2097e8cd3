// Soak: steady load through one fresh sluice (Redis store, cached key) for 5 minutes (20 s with
// --quick), sampling its RSS; growth is end vs start, where start is taken after a warm-up (a fresh
// Node process grows while it compiles and sizes its heap, which is not a leak). Also the old space's
// live bytes after each mark-compact (lib/heap-after-gc.cjs): what a leak grows, whatever the young
// generation does to RSS.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { rssBytes, sleep, withGroup } from '../lib/procs.mjs';
import { runLoad } from '../lib/load.mjs';
import { startRedis } from '../lib/redis.mjs';
import { BENCH_KEY, ROOT, startSluice, startUpstream, tempDir } from '../lib/servers.mjs';
import { bytes, int, ms, pct, table, target, plural } from '../lib/report.mjs';

export const title = 'Soak: RSS under steady load';

export async function run(settings) {
  return withGroup(async (group) => {
    const upstream = await startUpstream(group);
    const redis = await startRedis(group);
    const heapLog = path.join(tempDir('soak'), 'heap-after-gc.txt');
    process.env.HEAP_AFTER_GC_OUT = heapLog; // inherited by sluice
    const sluice = await startSluice(group, { upstream, redis, nodeArgs: ['--require', path.join(ROOT, 'load-tests/lib/heap-after-gc.cjs')] });
    const load = { url: sluice.url, requests: [{ headers: { 'x-api-key': BENCH_KEY } }], connections: settings.connections };
    await runLoad(settings.tool, { ...load, seconds: settings.soakWarmup });
    const soakStartedAt = Date.now();

    const samples = [{ t: 0, rss: rssBytes(sluice.pid) }];
    const every = Math.max(5, settings.soakSeconds / 10);
    const started = Date.now();
    let running = true;
    const sampler = (async () => {
      while (running) {
        await sleep(250);
        const t = (Date.now() - started) / 1000;
        if (running && t - samples[samples.length - 1].t >= every) {
          samples.push({ t, rss: rssBytes(sluice.pid) });
          process.stderr.write(`[soak] ${Math.round(t)} s / ${settings.soakSeconds} s: RSS ${bytes(samples[samples.length - 1].rss)}\n`);
        }
      }
    })();
    let r;
    try {
      r = await runLoad(settings.tool, { ...load, seconds: settings.soakSeconds });
    } finally {
      running = false;
      await sampler;
    }
    const end = { t: (Date.now() - started) / 1000, rss: rssBytes(sluice.pid) };
    samples.push(end);
    const growth = (100 * (end.rss - samples[0].rss)) / samples[0].rss;
    process.stderr.write(`[soak] done: ${Math.round(r.rps)} req/s, RSS ${bytes(samples[0].rss)} → ${bytes(end.rss)} (${pct(growth)})\n`);
    // Old-space live bytes after the mark-compacts of the soak itself (not the warm-up's).
    const afterGc = (existsSync(heapLog) ? readFileSync(heapLog, 'utf8') : '')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(' ').map(Number))
      .filter(([at]) => at >= soakStartedAt)
      .map(([, used]) => used);
    const heapLine = afterGc.length >= 2
      ? `Old space live after each of ${afterGc.length} mark-compacts: first ${bytes(afterGc[0])}, last ${bytes(afterGc[afterGc.length - 1])} (${pct((100 * (afterGc[afterGc.length - 1] - afterGc[0])) / afterGc[0])}), range ${bytes(Math.min(...afterGc))}–${bytes(Math.max(...afterGc))}.`
      : `Old space live after mark-compacts: ${afterGc.length} during the soak, too few to compare.`;
    process.stderr.write(`[soak] ${heapLine}\n`);
    const markdown = [
      `${settings.connections} connections for ${settings.soakSeconds} s after a ${settings.soakWarmup} s warm-up: ${int(r.requests)} requests, ` +
        `${int(r.rps)} req/s, p50 ${ms(r.p50)} ms, p99 ${ms(r.p99)} ms, ${int(r.errors)} errors, ${int(r.non2xx)} non-2xx.`,
      '',
      table(['', 'RSS start', 'RSS end', 'growth', 'max'], [['sluice', bytes(samples[0].rss), bytes(end.rss), pct(growth), bytes(Math.max(...samples.map((s) => s.rss)))]]),
      '',
      `RSS samples: ${samples.map((s) => `${Math.round(s.t)} s ${bytes(s.rss)}`).join(' · ')}`,
      '',
      heapLine,
    ].join('\n');
    return { markdown, targets: [target(`soak RSS growth < 10 % (${settings.soakSeconds} s)`, pct(growth), growth < 10)] };
  });
}
