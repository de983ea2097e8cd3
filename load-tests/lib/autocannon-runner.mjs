// The autocannon side of lib/load.mjs, run in a process of its own (pinned like wrk) so its CPU is
// separate from the harness's and measurable. Argument: the runLoad options as JSON. Prints one line
// `AUTOCANNON_JSON {…}` with the same fields as the wrk runner.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

const { url, connections, seconds, requests, keysFile } = JSON.parse(process.argv[2]);
const bodies = new Map();
const body = (bytes) => {
  if (!bytes) return undefined;
  if (!bodies.has(bytes)) bodies.set(bytes, Buffer.alloc(bytes, 'x'));
  return bodies.get(bytes);
};
const templates = requests.map((r) => ({ method: r.method ?? 'GET', path: r.path ?? '/', headers: r.headers ?? {}, body: body(r.bodyBytes) }));

let plan = templates;
if (keysFile) {
  // One template; each request takes the next key (from a random start, like the wrk script).
  const keys = readFileSync(keysFile, 'utf8').split('\n').filter(Boolean);
  let i = Math.floor(Math.random() * keys.length);
  const t = templates[0];
  plan = [{ ...t, setupRequest: (req) => ({ ...req, headers: { ...t.headers, 'x-api-key': keys[(i = (i + 1) % keys.length)] } }) }];
}

const result = await autocannon({ url, connections, duration: seconds, pipelining: 1, timeout: 10, requests: plan });
const cpu = process.cpuUsage();
const secs = result.duration;
const out = {
  requests: result.requests.total,
  rps: result.requests.total / secs,
  p50: result.latency.p50,
  p99: result.latency.p99,
  errors: result.errors, // includes timeouts
  non2xx: result.non2xx,
  bytes: result.throughput.total,
  seconds: secs,
  loadCpuUs: cpu.user + cpu.system,
};
console.log(`AUTOCANNON_JSON ${JSON.stringify(out)}`);
process.exit(0);
