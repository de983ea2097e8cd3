#!/usr/bin/env node
// Async resources made per request: `node load-tests/async-count.mjs DIR... [floor] [--stacks]`.
// Starts sluice from each checkout's dist/ (as load-tests/ab.mjs does; access log on) and the floor
// if named, each with lib/async-probe.cjs preloaded, drives each with the headline's load for a few
// seconds and prints the promises, timers, nextTicks... it created per request; --stacks adds where
// the promises and timers came from (sampled). Unlike CPU time these counts do not move with the
// machine's speed, which is what a change of a fraction of a microsecond needs.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { chooseTool, runLoad } from './lib/load.mjs';
import { sleep } from './lib/procs.mjs';
import { tempDir } from './lib/servers.mjs';
import { forEachSpec } from './lib/specs.mjs';

const args = process.argv.slice(2);
const withStacks = args.includes('--stacks');
const specs = args.filter((a) => !a.startsWith('--'));
if (specs.length === 0) throw new Error('usage: node load-tests/async-count.mjs DIR... [floor] [--stacks]');
const tool = chooseTool();
const probe = path.join(path.dirname(new URL(import.meta.url).pathname), 'lib/async-probe.cjs');
const out = path.join(tempDir('async-count'), 'counts.json');
process.env.ASYNC_PROBE_OUT = out;
if (withStacks) process.env.ASYNC_PROBE_STACKS = '1';

await forEachSpec(specs, { nodeArgs: ['--require', probe] }, async ({ spec, proc, load }) => {
  await runLoad(tool, { ...load, seconds: 2 }); // warm-up: pools, JIT
  process.kill(proc.pid, 'SIGUSR2');
  const r = await runLoad(tool, { ...load, seconds: 3 });
  process.kill(proc.pid, 'SIGUSR2');
  await sleep(300);
  const { counts, stacks } = JSON.parse(readFileSync(out, 'utf8'));
  const perRequest = Object.entries(counts)
    .filter(([, n]) => n / r.requests >= 0.01)
    .sort((a, b) => b[1] - a[1])
    .map(([type, n]) => `${type} ${(n / r.requests).toFixed(2)}`);
  console.log(`${spec}: ${r.requests} requests; per request: ${perRequest.join(', ')}`);
  if (withStacks) {
    for (const [where, n] of Object.entries(stacks).sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`  ${(n / r.requests).toFixed(2)}  ${where}`);
  }
});
