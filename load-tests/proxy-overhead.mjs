// Quick comparison: requests through sluice against a bare undici proxy and the upstream itself, in one run,
// alternating cases over several rounds (A B C A B C …) so machine noise hits all of them alike.
//   npm run build && node load-tests/proxy-overhead.mjs [--seconds 5] [--rounds 3] [--connections 50]
// Prints medians per case and the ratio to the bare proxy. The full harness (wrk, baselines,
// Redis command counts, RESULTS.md) is issue 7; this is the quick check used until then.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, connections: { type: 'string', default: '50' } } });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const connections = Number(values.connections);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const children = [];
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Spawns a process and resolves with the first stdout line matching `pick`. */
function start(cmd, args, pick, env = {}) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${cmd} exited with ${code}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const found = pick(line);
      if (found) resolve({ child, ...found });
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  children.push(child);
  for (let i = 0; i < 50; i++) {
    try {
      execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'ignore' });
      return port;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error('redis-server did not start');
}

const KEY = 'sk_bench_0123456789abcdef0123';

/** sluice with a route to the upstream, a key whose limits are never reached, and the given store. */
async function startGateway(upstreamPort, redisPort) {
  const port = await freePort();
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-')), 'gateway.yaml');
  const store = redisPort ? `store:\n  redis: { url: "redis://127.0.0.1:${redisPort}" }\n  timeout_ms: 1000\n` : '';
  writeFileSync(
    file,
    `listen: { host: 127.0.0.1, port: ${port} }\nadmin: { host: 127.0.0.1, port: 0 }\nlog: { level: warn }\n${store}` +
      `tiers:\n  bench: { limits: [ { requests: 100000000, per: 1m }, { requests: 1000000000, per: 1d } ], scopes: ["*"] }\n` +
      `upstreams:\n  app: { targets: ["http://127.0.0.1:${upstreamPort}"] }\n` +
      `routes:\n  - { name: all, match: { path_prefix: / }, upstream: app }\nkeys:\n  - { name: bench, tier: bench, key: ${KEY} }\n`,
  );
  const child = spawn(process.execPath, [path.join(root, 'dist/cli.js'), 'serve', '--config', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-api-key': KEY } }).then((r) => r.status === 200, () => false);
    if (ok) return port;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('gateway did not start');
}

function run(url, headers) {
  return new Promise((resolve, reject) => {
    autocannon({ url, connections, duration: seconds, headers, pipelining: 1 }, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

/** Calls per command from INFO commandstats (commands a script runs inside Redis included). */
function commandStats(port) {
  const text = execFileSync('redis-cli', ['-p', String(port), 'INFO', 'commandstats'], { encoding: 'utf8' });
  return Object.fromEntries([...text.matchAll(/cmdstat_(\w+):calls=(\d+)/g)].map((m) => [m[1], Number(m[2])]));
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const upstream = await start(process.execPath, [path.join(root, 'load-tests/bench-upstream.mjs')], (line) => JSON.parse(line));
const redisPort = await startRedis();
const bare = await start(process.execPath, [path.join(root, 'load-tests/bare-proxy.mjs')], (line) => JSON.parse(line), { UPSTREAM: `http://127.0.0.1:${upstream.port}` });
const cases = [
  { name: 'bare undici proxy (baseline)', url: `http://127.0.0.1:${bare.port}/`, headers: {} },
  { name: 'upstream direct', url: `http://127.0.0.1:${upstream.port}/`, headers: {} },
  { name: 'sluice, embedded store', url: `http://127.0.0.1:${await startGateway(upstream.port)}/`, headers: { 'x-api-key': KEY } },
  { name: 'sluice, Redis store', url: `http://127.0.0.1:${await startGateway(upstream.port, redisPort)}/`, headers: { 'x-api-key': KEY } },
];
const samples = new Map(cases.map((c) => [c.name, { rps: [], p50: [], p99: [], errors: 0, total: 0 }]));
const redisCase = cases[cases.length - 1];
const redisCalls = {};
for (let round = 1; round <= rounds; round++) {
  for (const c of cases) {
    const before = c === redisCase ? commandStats(redisPort) : null;
    const r = await run(c.url, c.headers);
    if (before) {
      const after = commandStats(redisPort);
      for (const [name, calls] of Object.entries(after)) redisCalls[name] = (redisCalls[name] ?? 0) + calls - (before[name] ?? 0);
    }
    const s = samples.get(c.name);
    s.total += r.requests.total;
    s.rps.push(r.requests.average);
    s.p50.push(r.latency.p50);
    s.p99.push(r.latency.p99);
    s.errors += r.errors + r.non2xx;
    console.error(`round ${round}/${rounds} ${c.name}: ${Math.round(r.requests.average)} req/s`);
  }
}
const base = median(samples.get(cases[0].name).rps);
console.log(`\n${connections} connections, ${seconds}s × ${rounds} rounds, node ${process.version}, ${os.cpus().length} cores\n`);
console.log('| case | req/s (median) | p50 ms | p99 ms | vs bare proxy | errors |\n| --- | --- | --- | --- | --- | --- |');
for (const c of cases) {
  const s = samples.get(c.name);
  console.log(`| ${c.name} | ${Math.round(median(s.rps))} | ${median(s.p50)} | ${median(s.p99)} | ${(median(s.rps) / base).toFixed(2)} | ${s.errors} |`);
}
const proxied = samples.get(redisCase.name).total;
const perRequest = Object.entries(redisCalls)
  .filter(([name, calls]) => calls > 0 && name !== 'info' && name !== 'config')
  .map(([name, calls]) => `${name} ${(calls / proxied).toFixed(3)}`)
  .join(', ');
console.log(`\nRedis commands per proxied request (INFO commandstats delta over ${proxied} requests; EVALSHA is the round trip, the rest run inside the script): ${perRequest}`);
process.exit(0);
