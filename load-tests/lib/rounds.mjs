// Runs a scenario's cases alternately — A B C, A B C, … — so that machine noise (another process, a
// thermal dip, the page cache) lands on every case alike, and summarises each case over its rounds.
import { runLoad } from './load.mjs';
import { cpuMicros, treeCpuMicros } from './procs.mjs';
import { commandStats, perRequest, statsDelta } from './redis.mjs';

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

/**
 * cases: [{ name, pid (the process whose CPU is charged; with tree: true, it and its descendants),
 *           load: { url, requests?, keysFile? },
 *           redis? (count its commands), windows? (rate-limit windows per request, default 2),
 *           quotas? (calendar quotas per request, default 0) }]
 * settings: { tool, rounds, seconds, warmup, connections, label }
 * Returns per case: { name, rps, p50, p99 (medians over rounds), requests, errors, non2xx, bytesPerSec, bytesPerReq,
 *   cpuUsPerReq (the median over rounds of the proxy's CPU ÷ requests, as issue #16's targets are measured),
 *   cpuUsPerReqPooled (its CPU over all rounds ÷ all their requests), loadCpuPct (the load generator's CPU
 *   as % of one core), redis: { roundTrips, direct, inScript } per request, or null }.
 */
export async function runRounds(settings, cases, { rounds = settings.rounds, connections = settings.connections } = {}) {
  const { tool, seconds, warmup, label } = settings;
  // Warm-up, not measured: JIT, connection pools, key caches.
  if (warmup > 0) for (const c of cases) await runLoad(tool, { ...c.load, connections, seconds: warmup });

  const acc = new Map(cases.map((c) => [c, { rps: [], p50: [], p99: [], requests: 0, seconds: 0, errors: 0, non2xx: 0, bytes: 0, cpuUs: 0, cpuPerReq: [], loadCpuUs: 0, redis: {} }]));
  for (let round = 1; round <= rounds; round++) {
    for (const c of cases) {
      const cpu = c.tree ? treeCpuMicros : cpuMicros;
      const cpuBefore = cpu(c.pid);
      const redisBefore = c.redis ? await commandStats(c.redis) : null;
      const r = await runLoad(tool, { ...c.load, connections, seconds });
      const cpuUs = cpu(c.pid) - cpuBefore;
      const a = acc.get(c);
      if (redisBefore) {
        for (const [name, calls] of Object.entries(statsDelta(redisBefore, await commandStats(c.redis)))) a.redis[name] = (a.redis[name] ?? 0) + calls;
      }
      a.rps.push(r.rps);
      a.p50.push(r.p50);
      a.p99.push(r.p99);
      a.requests += r.requests;
      a.seconds += r.seconds;
      a.errors += r.errors;
      a.non2xx += r.non2xx;
      a.bytes += r.bytes;
      a.cpuUs += cpuUs;
      a.cpuPerReq.push(cpuUs / Math.max(1, r.requests));
      a.loadCpuUs += r.loadCpuUs;
      const problems = r.errors + r.non2xx > 0 ? `, ${r.errors} errors, ${r.non2xx} non-2xx` : '';
      process.stderr.write(
        `[${label}] round ${round}/${rounds} ${c.name}: ${Math.round(r.rps)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ` +
          `${(cpuUs / Math.max(1, r.requests)).toFixed(1)} µs CPU/req${problems}\n`,
      );
    }
  }
  return cases.map((c) => {
    const a = acc.get(c);
    return {
      name: c.name,
      rps: median(a.rps),
      p50: median(a.p50),
      p99: median(a.p99),
      requests: a.requests,
      errors: a.errors,
      non2xx: a.non2xx,
      bytesPerSec: a.bytes / a.seconds,
      bytesPerReq: a.bytes / Math.max(1, a.requests),
      cpuUsPerReq: median(a.cpuPerReq),
      cpuUsPerReqPooled: a.cpuUs / Math.max(1, a.requests),
      loadCpuPct: (100 * a.loadCpuUs) / 1e6 / a.seconds,
      redis: c.redis ? perRequest(a.redis, a.requests, c.windows ?? 2, c.quotas ?? 0) : null,
    };
  });
}
