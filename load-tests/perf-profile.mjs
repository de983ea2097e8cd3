#!/usr/bin/env node
// Where a warm process's CPU goes, kernel included: `node load-tests/perf-profile.mjs DIR|floor [--seconds N] [--top N] [--level warn]`.
// Starts sluice from DIR's dist/ (access log on; --level warn: off) or the floor under node
// --perf-basic-prof-only-functions (its JIT code named in /tmp/perf-<pid>.map, removed afterwards),
// warms it for WARMUP s (10) with the headline's load, then samples it with `perf record -e cpu-clock`
// for --seconds of the same load and prints the top symbols by self time, in µs per request, and the
// split between the kernel, node's own code (C++, libuv, V8's builtins: inline caches, promises,
// string handling) and JIT-compiled JavaScript. Unlike profile.mjs it sees the kernel and V8's
// builtins, and leaves start-up and warm-up out. KEEP=FILE keeps perf's whole report.
// --callers StringAdd,WriteToFlat records call stacks too (-g) and prints, for the native symbols whose
// names contain those words, which JavaScript functions they ran under (the nearest JS frame), in µs/req.
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
  options: {
    seconds: { type: 'string', default: '10' },
    top: { type: 'string', default: '30' },
    level: { type: 'string', default: 'info' },
    callers: { type: 'string' },
  },
});
const spec = positionals[0] ?? '.';
const warmup = Number(process.env.WARMUP ?? 10);
const tool = chooseTool();
const data = path.join(tempDir('perf'), 'perf.data');

let report;
await forEachSpec([spec], { nodeArgs: ['--perf-basic-prof-only-functions'], level: values.level }, async ({ proc, load }) => {
  await runLoad(tool, { ...load, seconds: warmup });
  const stacks = values.callers ? ['-g'] : [];
  const perf = spawn('perf', ['record', '-q', ...stacks, '-e', 'cpu-clock', '-F', '4999', '-p', String(proc.pid), '-o', data], { stdio: 'ignore' });
  await sleep(300);
  const r = await runLoad(tool, { ...load, seconds: Number(values.seconds) });
  perf.kill('SIGINT');
  await new Promise((resolve) => perf.once('exit', resolve));
  report = { requests: r.requests, rps: r.rps, pid: proc.pid };
});

const callerTable = values.callers ? nearestJsCallers(values.callers.split(',')) : undefined;
const out = spawnSync('perf', ['report', '-i', data, '--no-children', '--sort', 'dso,sym', '--stdio', '-F', 'overhead,sample,dso,sym'], { encoding: 'utf8', maxBuffer: 1 << 28 });
rmSync(`/tmp/perf-${report.pid}.map`, { force: true }); // after every perf command that names JIT code
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
/** A markdown table cell: `|` escaped, at most `width` characters. */
const cell = (text, width) => text.replace(/\|/g, '\\|').slice(0, width);
for (const r of rows.slice(0, Number(values.top))) console.log(`| ${cell(r.sym, 90)} | ${side(r)} | ${perReq(r.samples)} |`);

if (callerTable) {
  console.log('\n| native symbol | under JavaScript function | µs/req |\n| --- | --- | --- |');
  for (const [where, n] of callerTable.slice(0, Number(values.top))) {
    const [sym, js] = where.split('\t');
    console.log(`| ${cell(sym, 60)} | ${cell(js, 90)} | ${perReq(n)} |`);
  }
}

/** Samples whose leaf symbol contains one of `words`, counted by (leaf, nearest JS frame on its stack). */
function nearestJsCallers(words) {
  const script = spawnSync('perf', ['script', '-i', data, '-F', 'ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const counts = new Map();
  for (const sample of script.stdout.split('\n\n')) {
    const frames = sample
      .split('\n')
      .map((l) => l.trim().replace(/^[0-9a-f]+\s+/, ''))
      .filter(Boolean);
    const leaf = frames[0];
    if (!leaf || !words.some((w) => leaf.includes(w))) continue;
    const js = frames.find((f) => f.startsWith('JS:')) ?? '(no JS frame)';
    const key = `${leaf.replace(/\+0x[0-9a-f]+$/, '')}\t${js.replace(/\+0x[0-9a-f]+$/, '')}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]);
}
