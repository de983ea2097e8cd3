// Where sluice's CPU goes on the headline request: `node load-tests/profile.mjs [--seconds N] [--log info|warn]`.
// Starts the headline's upstream, Redis and sluice (access log on at the default level unless --log
// warn) under `node --cpu-prof`, drives it with the bench's load tool, stops it so V8 writes the
// profile, and prints the top functions by self time and the self time per source file (markdown).
import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chooseTool, runLoad } from './lib/load.mjs';
import { withGroup } from './lib/procs.mjs';
import { startRedis } from './lib/redis.mjs';
import { BENCH_KEY, ROOT, startFloor, startSluice, startUpstream, tempDir } from './lib/servers.mjs';
import { table } from './lib/report.mjs';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    log: { type: 'string', default: 'info' },
    top: { type: 'string', default: '25' },
    floor: { type: 'boolean', default: false }, // profile the floor baseline instead, to compare
    client: { type: 'string', default: 'ioredis' }, // the floor's Redis client (floor-proxy.mjs' REDIS_CLIENT)
    keep: { type: 'string' }, // copy the .cpuprofile here (open it in Chrome DevTools or speedscope)
    interval: { type: 'string', default: '1000' }, // µs between samples (V8's default, 1000, misses the small functions)
  },
});
const dir = tempDir('cpuprof');
const tool = chooseTool();
let warmup;

const summary = await withGroup(async (group) => {
  const upstream = await startUpstream(group);
  const redis = await startRedis(group);
  const nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${values.interval}`];
  const sluice = values.floor
    ? await startFloor(group, upstream, redis, nodeArgs, values.client)
    : await startSluice(group, { upstream, redis, config: { log: { level: values.log } }, nodeArgs });
  const load = { url: sluice.url, connections: 50, requests: [{ headers: { 'x-api-key': BENCH_KEY } }] };
  warmup = await runLoad(tool, { ...load, seconds: 2 }); // warm-up: in the profile too
  const result = await runLoad(tool, { ...load, seconds: Number(values.seconds) });
  sluice.child.kill('SIGTERM');
  await sluice.child.exited;
  return result;
});

const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error('no .cpuprofile written');
if (values.keep) copyFileSync(path.join(dir, file), values.keep);
const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
const totalUs = profile.endTime - profile.startTime;
const interval = totalUs / profile.samples.length;
const shortUrl = (url) => url.replace(`file://${ROOT}/`, '').replace(/^node:/, 'node:').replace(/.*node_modules\//, '');
const byFunction = new Map();
const byFile = new Map();
let idle = 0;
for (const node of profile.nodes) {
  const { functionName, url, lineNumber } = node.callFrame;
  const self = node.hitCount * interval;
  if (functionName === '(idle)') idle += self;
  const fn = `${functionName || '(anonymous)'} ${url ? `${shortUrl(url)}:${lineNumber + 1}` : ''}`.trim();
  byFunction.set(fn, (byFunction.get(fn) ?? 0) + self);
  const where = url ? shortUrl(url).replace(/\/[^/]*$/, (m) => (url.includes('node_modules') ? '' : m)) : functionName;
  byFile.set(where, (byFile.get(where) ?? 0) + self);
}
const busy = totalUs - idle;

// Inclusive ("total") time of sluice's own functions: each sample counts once for every distinct
// function of dist/ on its stack.
const parent = new Map();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
const nodeById = new Map(profile.nodes.map((n) => [n.id, n]));
const label = (node) => `${node.callFrame.functionName || '(anonymous)'} ${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
const inclusive = new Map();
for (const sample of profile.samples) {
  const seen = new Set();
  for (let id = sample; id !== undefined; id = parent.get(id)) {
    const node = nodeById.get(id);
    if (node.callFrame.url.includes(`${ROOT}/dist/`)) seen.add(label(node));
  }
  for (const fn of seen) inclusive.set(fn, (inclusive.get(fn) ?? 0) + interval);
}
const requests = summary.requests + warmup.requests;
const top = (map, n) =>
  [...map]
    .filter(([k]) => k !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, us]) => [k, `${((100 * us) / busy).toFixed(1)} %`, (us / requests).toFixed(1)]);
console.log(`${values.floor ? 'floor' : `sluice, log level ${values.log}`}: ${Math.round(summary.rps)} req/s over ${values.seconds} s (load tool ${tool}); busy ${((100 * busy) / totalUs).toFixed(0)} % of the profile; ${requests} requests in it, warm-up included\n`);
console.log(`Top functions by self time (share of busy time):\n\n${table(['function', 'self', 'µs/req'], top(byFunction, Number(values.top)))}\n`);
console.log(`Self time by file or package:\n\n${table(['file or package', 'self', 'µs/req'], top(byFile, 20))}\n`);
console.log(`sluice's functions by total time (self + what they call):\n\n${table(['function', 'total', 'µs/req'], top(inclusive, Number(values.top)))}`);
