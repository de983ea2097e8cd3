#!/usr/bin/env node
// System calls per request: `node load-tests/syscall-count.mjs DIR... [floor]`.
// Starts sluice from each checkout's dist/ (access log on, as ab.mjs does) and the floor if named,
// drives each with the headline's load, attaches `strace -c -f` for a few seconds and prints the
// system calls per request by name. Like async-count.mjs, counts that do not move with the VM's speed.
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { chooseTool, runLoad } from './lib/load.mjs';
import { sleep } from './lib/procs.mjs';
import { tempDir } from './lib/servers.mjs';
import { forEachSpec } from './lib/specs.mjs';

const specs = process.argv.slice(2);
if (specs.length === 0) throw new Error('usage: node load-tests/syscall-count.mjs DIR... [floor]');
const tool = chooseTool();
const dir = tempDir('syscall-count');

await forEachSpec(specs, {}, async ({ spec, i, proc, load }) => {
  await runLoad(tool, { ...load, seconds: 2 }); // warm-up: pools, JIT
  const out = path.join(dir, `case-${i}.txt`);
  const strace = spawn('strace', ['-c', '-f', '-o', out, '-p', String(proc.pid)], { stdio: 'ignore' });
  await sleep(500);
  const r = await runLoad(tool, { ...load, seconds: 4 });
  strace.kill('SIGINT');
  await new Promise((resolve) => strace.once('exit', resolve));
  const rows = readFileSync(out, 'utf8')
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 5 && /^\d/.test(f[0]) && f[f.length - 1] !== 'total')
    .map((f) => [f[f.length - 1], Number(f[3])])
    .filter(([, n]) => n / r.requests >= 0.01)
    .sort((a, b) => b[1] - a[1]);
  console.log(`${spec}: ${r.requests} requests (strace attached: slower, so writes batch more); per request: ${rows.map(([name, n]) => `${name} ${(n / r.requests).toFixed(2)}`).join(', ')}`);
});
