// Where the CPU goes besides the main thread, and what feeds the GC: `node load-tests/gc-profile.mjs
// [--floor] [--seconds N] [--top N] [--node-flag=FLAG ...]`. Runs the headline's upstream, Redis and
// sluice (as the image runs it, access log on; or the floor) under the headline load and prints, per
// request: CPU by thread (the main thread; the others are V8's GC and compiler helpers and libuv's
// pool, which share the proxy's one core) and GC pauses by kind, then, in a second run under V8's
// sampling heap profiler (collected objects included), bytes allocated by function. The probe's
// inspector session slows the process (both sluice and the floor): compare the two, not with the
// bench. How this round found that sonic-boom allocated ~3.7 KB per access-log line and that small
// semi-spaces kept four GC helpers busy.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chooseTool, runLoad } from './lib/load.mjs';
import { CLK_TCK, sleep, waitFor, withGroup } from './lib/procs.mjs';
import { startRedis } from './lib/redis.mjs';
import { BENCH_KEY, ROOT, startFloor, startSluice, startUpstream, tempDir } from './lib/servers.mjs';
import { table } from './lib/report.mjs';

const { values } = parseArgs({
  options: {
    floor: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '8' },
    top: { type: 'string', default: '25' },
    'node-flag': { type: 'string', multiple: true, default: [] },
  },
});
const out = path.join(tempDir('gc-profile'), 'probe.json');
const tool = chooseTool();

/** CPU µs of each thread of `pid` so far: main (the pid itself) and the others. */
function threadCpu(pid) {
  const tick = 1_000_000 / CLK_TCK;
  const cpu = { main: 0, others: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    cpu[tid === String(pid) ? 'main' : 'others'] += (Number(fields[11]) + Number(fields[12])) * tick;
  }
  return cpu;
}

const run = await withGroup(async (group) => {
  const upstream = await startUpstream(group);
  const redis = await startRedis(group);
  const nodeArgs = ['--require', path.join(ROOT, 'load-tests/lib/probe.cjs'), ...values['node-flag']];
  process.env.PROBE_OUT = out; // inherited by the process under test
  const target = values.floor
    ? await startFloor(group, upstream, redis, nodeArgs)
    : await startSluice(group, { upstream, redis, nodeArgs, config: { log: { level: 'info' } } });
  const load = { url: target.url, connections: 50, requests: [{ headers: { 'x-api-key': BENCH_KEY } }] };
  await runLoad(tool, { ...load, seconds: 3 }); // warm-up, not recorded
  // Phase 1: CPU by thread and GC pauses, as the process runs. Phase 2: allocations, under the sampler.
  target.child.kill('SIGUSR2');
  await sleep(200);
  const before = threadCpu(target.pid);
  const result = await runLoad(tool, { ...load, seconds: Number(values.seconds) });
  const after = threadCpu(target.pid);
  target.child.kill('SIGUSR2');
  await sleep(200);
  const sampled = await runLoad(tool, { ...load, seconds: Number(values.seconds) });
  target.child.kill('SIGUSR2');
  await waitFor('the probe', async () => existsSync(out), 15_000);
  return { result, sampled, cpu: { main: after.main - before.main, others: after.others - before.others } };
});

const requests = run.result.requests;
const perRequest = (x) => (x / requests).toFixed(1);
const sampledRequests = run.sampled.requests;
const { pauses, profile } = JSON.parse(readFileSync(out, 'utf8'));
const shortUrl = (url) => url.replace(`file://${ROOT}/`, '').replace(/.*node_modules\//, '');
const labels = new Map();
const label = (node) => {
  labels.set(node.id, `${node.callFrame.functionName || '(anonymous)'} ${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`);
  node.children.forEach(label);
};
label(profile.head);
const bytes = new Map();
let allocated = 0;
for (const sample of profile.samples) {
  const where = labels.get(sample.nodeId);
  bytes.set(where, (bytes.get(where) ?? 0) + sample.size);
  allocated += sample.size;
}

console.log(`${values.floor ? 'floor' : 'sluice (access log on)'}${values['node-flag'].length ? ` with ${values['node-flag'].join(' ')}` : ''}: ${Math.round(run.result.rps)} req/s over ${values.seconds} s, ${requests} requests\n`);
console.log(`CPU by thread:\n\n${table(['thread', 'µs/req'], [['main', perRequest(run.cpu.main)], ['others (GC and compiler helpers, libuv pool)', perRequest(run.cpu.others)]])}\n`);
const pauseRows = Object.entries(pauses).map(([kind, p]) => [kind, ((1000 * p.count) / requests).toFixed(2), perRequest(p.ms * 1000), p.maxMs.toFixed(1)]);
console.log(`GC pauses:\n\n${table(['kind', 'per 1,000 requests', 'µs/req', 'longest (ms)'], pauseRows)}\n`);
const top = [...bytes].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)).map(([where, b]) => [where, Math.round(b / sampledRequests)]);
console.log(`Allocated (a second run of ${values.seconds} s, ${sampledRequests} requests, under V8's sampling heap profiler): ${Math.round(allocated / sampledRequests)} bytes per request. Top functions:\n\n${table(['function', 'bytes/req'], top)}`);
