#!/usr/bin/env node
// How long a cold process takes to reach its steady cost: `node load-tests/warm-up.mjs DIR... [floor]`.
// Starts sluice from each checkout's dist/ (access log on, as ab.mjs does) and the floor if named,
// drives each from cold with the headline's load in consecutive periods (PERIODS, 8; SECONDS, 2 each)
// and prints, per period, req/s and CPU µs per request split into the main thread and the rest
// (V8's compiler and GC helper threads, libuv's pool). All of them share the core the proxy is pinned
// to, so compilation still under way is charged to the requests of that period: the bench's warm-up
// has to outlast it (load-tests/README.md, "Warm-up").
import { readdirSync } from 'node:fs';
import { chooseTool, runLoad } from './lib/load.mjs';
import { threadCpuMicros } from './lib/procs.mjs';
import { forEachSpec } from './lib/specs.mjs';

const specs = process.argv.slice(2);
if (specs.length === 0) throw new Error('usage: node load-tests/warm-up.mjs DIR... [floor]');
const periods = Number(process.env.PERIODS ?? 8);
const seconds = Number(process.env.SECONDS ?? 2);
const tool = chooseTool();

/** CPU µs of the process's main thread (its tid is its pid) and of all its other threads. */
function threadCpu(pid) {
  let main = 0;
  let rest = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const us = threadCpuMicros(pid, tid);
    if (Number(tid) === pid) main += us;
    else rest += us;
  }
  return { main, rest };
}

await forEachSpec(specs, {}, async ({ spec, proc, load }) => {
  for (let period = 1; period <= periods; period++) {
    const before = threadCpu(proc.pid);
    const r = await runLoad(tool, { ...load, seconds });
    const after = threadCpu(proc.pid);
    const [main, rest] = [after.main - before.main, after.rest - before.rest].map((us) => us / Math.max(1, r.requests));
    console.log(`${spec} ${(period - 1) * seconds}-${period * seconds} s: ${Math.round(r.rps)} req/s, ${(main + rest).toFixed(1)} µs/req (main thread ${main.toFixed(1)}, other threads ${rest.toFixed(1)})`);
  }
});
