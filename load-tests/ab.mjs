// Builds side by side: `node load-tests/ab.mjs DIR[@node-flag...][#log-level] ... [floor]` starts sluice from each
// checkout's dist/ (DIR: a copy of the repository, or just a dist/ beside a node_modules link) with the
// headline's config, and the floor if named, then drives them in alternating rounds with the bench's
// load tool, pinned as the bench pins, and prints CPU µs per request, req/s and p99 per round and
// their medians. How this round's hot-path changes were measured: this VM's noise (±10 % between
// runs) is shared by builds measured minutes apart in one run, not by runs an hour apart.
//   ROUNDS (5), SECONDS (4), WARMUP (10, per case, once), LOG (info: the access log on) tune it.
//   e.g. node load-tests/ab.mjs /tmp/before . . @--max-semi-space-size=16 .#warn
import { chooseTool, runLoad } from './lib/load.mjs';
import { cpuMicros, withGroup } from './lib/procs.mjs';
import { median } from './lib/rounds.mjs';
import { startRedis } from './lib/redis.mjs';
import { headlineLoad, startSpec, startUpstream } from './lib/servers.mjs';

const specs = process.argv.slice(2);
if (specs.length === 0) throw new Error('usage: node load-tests/ab.mjs DIR[@node-flag...] ... [floor[@node-flag...]]');
const env = (name, fallback) => Number(process.env[name] ?? fallback);
const [rounds, seconds, warmup] = [env('ROUNDS', 5), env('SECONDS', 4), env('WARMUP', 10)];
const tool = chooseTool();

const results = new Map();
await withGroup(async (group) => {
  const upstream = await startUpstream(group);
  const redis = await startRedis(group);
  const cases = [];
  for (const [i, spec] of specs.entries()) {
    const [place, level = process.env.LOG ?? 'info'] = spec.split('#');
    const [where, ...nodeArgs] = place.split('@');
    const proc = await startSpec(group, where || '.', { upstream, redis, name: `case-${i}`, nodeArgs, level });
    cases.push({ name: `${i}: ${spec}`, proc, load: headlineLoad(proc) });
  }
  for (const c of cases) await runLoad(tool, { ...c.load, seconds: warmup });
  for (let round = 1; round <= rounds; round++) {
    for (const c of cases) {
      const before = cpuMicros(c.proc.pid);
      const r = await runLoad(tool, { ...c.load, seconds });
      const row = { us: (cpuMicros(c.proc.pid) - before) / r.requests, rps: r.rps, p99: r.p99 };
      results.set(c.name, [...(results.get(c.name) ?? []), row]);
      console.log(`round ${round}/${rounds} ${c.name}: ${row.us.toFixed(1)} µs/req, ${Math.round(row.rps)} req/s, p99 ${row.p99.toFixed(1)} ms`);
    }
  }
});
console.log('\nmedians:');
for (const [name, rows] of results) {
  console.log(`${name}: ${median(rows.map((r) => r.us)).toFixed(1)} µs/req, ${Math.round(median(rows.map((r) => r.rps)))} req/s, p99 ${median(rows.map((r) => r.p99)).toFixed(1)} ms`);
}
