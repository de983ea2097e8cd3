#!/usr/bin/env node
// Where a warm process's CPU goes, kernel included: `node load-tests/perf-profile.mjs DIR|floor [--seconds N] [--top N] [--level warn]`.
// Starts sluice from DIR's dist/ (access log on; --level warn: off) or the floor under node
// --perf-basic-prof-only-functions (its JIT code named in /tmp/perf-<pid>.map, removed afterwards),
// warms it for WARMUP s (10) with the headline's load, then samples it with `perf record -e cpu-clock`
// for --seconds of the same load and prints the top symbols by self time, in µs per request, and the
// split between the kernel, node's own code (C++, libuv, V8's builtins: inline caches, promises,
// string handling) and JIT-compiled JavaScript. Unlike profile.mjs it sees the kernel and V8's
// builtins, and leaves start-up and warm-up out. KEEP=FILE keeps perf's whole report.
import { spawn, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chooseTool, runLoad } from './lib/load.mjs';
import { sleep } from './lib/procs.mjs';
import { tempDir } from './lib/servers.mjs';
import { forEachSpec } from './lib/specs.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { seconds: { type: 'string', default: '10' }, top: { type: 'string', default: '30' }, level: { type: 'string', default: 'info' } },
});
const spec = positionals[0] ?? '.';
const warmup = Number(process.env.WARMUP ?? 10);
const tool = chooseTool();
const data = path.join(tempDir('perf'), 'perf.data');

let report;
await forEachSpec([spec], { nodeArgs: ['--perf-basic-prof-only-functions'], level: values.level }, async ({ proc, load }) => {
  await runLoad(tool, { ...load, seconds: warmup });
  const perf = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '4999', '-p', String(proc.pid), '-o', data], { stdio: 'ignore' });
  await sleep(300);
  const r = await runLoad(tool, { ...load, seconds: Number(values.seconds) });
  perf.kill('SIGINT');
  await new Promise((resolve) => perf.once('exit', resolve));
  report = { requests: r.requests, rps: r.rps, pid: proc.pid };
});

const out = spawnSync('perf', ['report', '-i', data, '--no-children', '--sort', 'dso,sym', '--stdio', '-F', 'overhead,sample,dso,sym'], { encoding: 'utf8', maxBuffer: 1 << 28 });
rmSync(`/tmp/perf-${report.pid}.map`, { force: true });
if (process.env.KEEP) writeFileSync(process.env.KEEP, out.stdout); // perf's own report, whole
const rows = out.stdout
  .split('\n')
  .filter((l) => /^\s+[\d.]+%/.test(l))
  .map((l) => {
    const m = /^\s+([\d.]+)%\s+(\d+)\s+(.+?)\s+\[(.)\]\s+(.*)$/.exec(l);
    return m && { share: Number(m[1]), samples: Number(m[2]), dso: m[3], kind: m[4], sym: m[5].trim() };
  })
  .filter(Boolean)
  .sort((a, b) => b.samples - a.samples);
const total = rows.reduce((s, r) => s + r.samples, 0);
const usPerSample = 1e6 / 4999;
const perReq = (samples) => ((samples * usPerSample) / report.requests).toFixed(1);
const by = (pick) => {
  const m = new Map();
  for (const r of rows) m.set(pick(r), (m.get(pick(r)) ?? 0) + r.samples);
  return [...m].sort((a, b) => b[1] - a[1]);
};
/** Where a symbol runs: the kernel, JIT-compiled JavaScript (node's perf map), or a native object. */
const side = (r) => (r.kind === 'k' ? 'kernel' : r.dso.startsWith('[JIT]') ? 'JavaScript (JIT)' : `native: ${r.dso}`);
console.log(`${spec}: ${Math.round(report.rps)} req/s, ${report.requests} requests sampled, ${perReq(total)} µs/req on the CPU (perf cpu-clock, after ${warmup} s of warm-up)\n`);
console.log('| where | µs/req | share |\n| --- | --- | --- |');
for (const [name, n] of by(side)) console.log(`| ${name} | ${perReq(n)} | ${((100 * n) / total).toFixed(1)} % |`);
console.log('\n| symbol | where | µs/req |\n| --- | --- | --- |');
for (const r of rows.slice(0, Number(values.top))) console.log(`| ${r.sym.replace(/\|/g, '\\|').slice(0, 90)} | ${side(r)} | ${perReq(r.samples)} |`);
