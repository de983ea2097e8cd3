// The servers a scenario drives: the upstream, the baselines (bare undici, bare http-proxy, nginx)
// and sluice itself. Each `start…` takes the scenario's process group and returns { pid, port, url }.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { CORE, freePort, hasCommand, portOpen, waitFor } from './procs.mjs';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const here = (file) => path.join(ROOT, 'load-tests', file);
const url = (port) => `http://127.0.0.1:${port}`;
const portLine = (line) => JSON.parse(line).port && { port: JSON.parse(line).port };

// Configs, scripts, key lists, Redis and nginx working dirs: removed when the harness exits.
const tempDirs = [];
process.on('exit', () => tempDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

export function tempDir(name) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `sluice-bench-${name}-`));
  tempDirs.push(dir);
  return dir;
}

export async function startUpstream(group) {
  const up = await group.start('upstream', process.execPath, [here('bench-upstream.mjs')], { core: CORE.helpers, readyLine: portLine });
  return { ...up, url: url(up.port) };
}

/** Baseline 1: undici Pool, forward, pipe back (bare-proxy.mjs). */
export async function startBareUndici(group, upstream) {
  const p = await group.start('bare-undici', process.execPath, [here('bare-proxy.mjs')], {
    core: CORE.proxy,
    env: { UPSTREAM: upstream.url },
    readyLine: portLine,
  });
  return { ...p, url: url(p.port) };
}

/** Baseline 3, the floor: bare undici + SHA-256 of the key + one EVALSHA of sluice's window script (floor-proxy.mjs). */
export async function startFloor(group, upstream, redis, nodeArgs = [], client = 'ioredis') {
  const p = await group.start(`floor-${client}`, process.execPath, [...nodeArgs, here('floor-proxy.mjs')], {
    core: CORE.proxy,
    env: { UPSTREAM: upstream.url, REDIS_URL: redis.url, REDIS_CLIENT: client },
    readyLine: portLine,
  });
  return { ...p, url: url(p.port) };
}

/** Baseline 2: http-proxy with a keep-alive agent of the same size (bare-http-proxy.mjs). */
export async function startBareHttpProxy(group, upstream) {
  const p = await group.start('bare-http-proxy', process.execPath, [here('bare-http-proxy.mjs')], {
    core: CORE.proxy,
    env: { UPSTREAM: upstream.url },
    readyLine: portLine,
  });
  return { ...p, url: url(p.port) };
}

export const nginxBinary = ['nginx', '/usr/sbin/nginx'].find((n) => hasCommand(n));

export function nginxVersion() {
  if (!nginxBinary) return null;
  return spawnSync(nginxBinary, ['-v'], { encoding: 'utf8' }).stderr.trim().replace(/^nginx version: /, '');
}

/**
 * Baseline 3 (when installed): nginx as a reverse proxy with a keep-alive upstream pool. One worker,
 * no master, no daemon, so the pid we measure is the one doing the work; everything (config, temp
 * dirs, logs) lives in a temp prefix so it needs nothing from /etc/nginx or /var.
 */
export async function startNginx(group, upstream) {
  if (!nginxBinary) return null;
  const dir = tempDir('nginx');
  const port = await freePort();
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(dir, sub));
  const conf = `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  upstream app {
    server 127.0.0.1:${upstream.port};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
}
`;
  writeFileSync(path.join(dir, 'nginx.conf'), conf);
  // -e: the error log before the config is read (the default path may not be writable or exist).
  const p = await group.start('nginx', nginxBinary, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], { core: CORE.proxy });
  await waitFor('nginx', () => portOpen(port), 15_000, p.child);
  return { ...p, port, url: url(port) };
}

/**
 * The node flags the image starts sluice with (deploy/Dockerfile's ENTRYPOINT, between "node" and
 * the script): the bench measures sluice as it is shipped.
 */
export const IMAGE_NODE_FLAGS = (() => {
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(readFileSync(path.join(ROOT, 'deploy/Dockerfile'), 'utf8'));
  const argv = JSON.parse(entrypoint[1]);
  return argv.slice(argv.indexOf('node') + 1, argv.indexOf('dist/cli.js'));
})();

export const BENCH_KEY = 'sk_bench_0123456789abcdef0123';

/** A tier whose two windows are never reached: the full rate-limit path, never a 429. */
export const OPEN_TIER = { limits: [{ requests: 1_000_000_000, per: '1m' }, { requests: 10_000_000_000, per: '1d' }], scopes: ['*'] };

/**
 * sluice with a Redis store. `config` is merged over the base: a route `/` to the upstream, the
 * open tier `bench` and the seed key BENCH_KEY. Access log off (log level warn), no drain delay.
 * Waits until the admin /readyz answers 200 and the seed key gets a 200 through the proxy.
 * `args`: more `serve` arguments (`--workers 2`); `core`: what taskset pins it to (default the proxy's core);
 * `root`: the checkout whose dist/ runs (load-tests/ab.mjs compares builds).
 */
export async function startSluice(group, { upstream, redis, config = {}, name = 'sluice', args = [], core = CORE.proxy, nodeArgs = [], root = ROOT }) {
  const port = await freePort();
  const adminPort = await freePort();
  const base = {
    listen: { host: '127.0.0.1', port },
    admin: { host: '127.0.0.1', port: adminPort },
    log: { level: 'warn' },
    lifecycle: { drain_delay: '0s', grace: '2s' },
    store: { redis: { url: redis.url, key_prefix: redis.prefix }, timeout_ms: 1000 },
    tiers: { bench: OPEN_TIER },
    upstreams: { app: { targets: [upstream.url] } },
    routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
    keys: [{ name: 'bench', tier: 'bench', key: BENCH_KEY }],
  };
  const merged = {
    ...base,
    ...config,
    tiers: { ...base.tiers, ...config.tiers },
    routes: [...(config.routes ?? []), ...base.routes],
    keys: [...base.keys, ...(config.keys ?? [])],
  };
  const file = path.join(tempDir('sluice'), 'gateway.yaml');
  writeFileSync(file, YAML.stringify(merged));
  // What an operator does before the first replica: declare the store new (seeds BENCH_KEY; a no-op
  // on a store another case already initialised).
  const init = spawnSync(process.execPath, [path.join(root, 'dist/cli.js'), 'store', 'init', '--config', file], { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`sluice store init failed: ${init.stderr || init.stdout}`);
  const p = await group.start(name, process.execPath, [...IMAGE_NODE_FLAGS, ...nodeArgs, path.join(root, 'dist/cli.js'), 'serve', '--config', file, ...args], { core });
  await waitFor(`${name} /readyz`, async () => (await fetch(`${url(adminPort)}/readyz`)).status === 200, 15_000, p.child);
  await waitFor(`${name} proxying`, async () => (await fetch(`${url(port)}/`, { headers: { 'x-api-key': BENCH_KEY } })).status === 200, 15_000, p.child);
  return { ...p, port, adminPort, url: url(port), configFile: file };
}

/**
 * What a diagnostic script's argument names: `floor`, or a checkout (or a dist/ beside a node_modules
 * link) whose dist/ runs as sluice, with the access log at `level` (info: on, as a user runs it).
 */
export function startSpec(group, spec, { upstream, redis, name = 'sluice', nodeArgs = [], level = 'info' }) {
  return spec === 'floor'
    ? startFloor(group, upstream, redis, nodeArgs)
    : startSluice(group, { upstream, redis, name, root: path.resolve(spec), nodeArgs, config: { log: { level } } });
}

/** The headline's load against a started proxy: 50 connections, GET / with the bench key. */
export function headlineLoad(proc) {
  return { url: proc.url, connections: 50, requests: [{ headers: { 'x-api-key': BENCH_KEY } }] };
}
