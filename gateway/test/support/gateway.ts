import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { startRedis, type TestRedis } from './redis';
import { startUpstream, type TestUpstream } from './upstream';
import { loadConfigFile } from '../../src/config/loader';
import { withRedisKeyStore } from '../../src/backends';
import { initialiseStore } from '../../src/keys/store-init';

// Starts real gateway processes (the built CLI, `npm test` builds first) on free ports.

export const REPO_ROOT = path.resolve(__dirname, '../../..');
export const CLI = path.join(REPO_ROOT, 'dist/cli.js');

export interface TestGateway {
  url: string;
  port: number;
  adminUrl: string;
  adminPort: number;
  process: ChildProcess;
  pid: number;
  /** Every stdout/stderr line so far (JSON log lines, mostly). */
  output: string[];
  /** Resolves with the exit code once the process is gone. */
  exited: Promise<number | null>;
  /** Sends a signal and waits for exit (SIGKILL after `waitMs`). */
  stop(signal?: NodeJS.Signals, waitMs?: number): Promise<number | null>;
}

/** Writes `config` (a plain object in the YAML shape) to a temp file and returns its path. */
export function writeConfig(config: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-test-'));
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, typeof config === 'string' ? config : stringify(config));
  return file;
}

/** A minimal valid config with ports 0 (free ports), fast drain, quiet logs; override what a test needs. */
export function baseConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    lifecycle: { drain_delay: '0s', grace: '5s' },
    log: { level: 'info' },
    ...overrides,
  };
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * What an operator does before the first replica: `sluice store init` on the config's Redis store
 * (the same function the CLI runs; nothing on an initialised store or the embedded one). A config
 * that does not load is left for the gateway to refuse.
 */
export async function initStore(configFile: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let config;
  try {
    config = loadConfigFile(configFile, env);
  } catch {
    return;
  }
  if (config.store.redis) await withRedisKeyStore(config, (store) => initialiseStore(store, config));
}

/** Initialises the config's key store (initStore), then starts a replica on it (spawnGateway). */
export async function startGateway(...args: Parameters<typeof spawnGateway>): Promise<TestGateway> {
  const [configFile, env = process.env] = args;
  await initStore(configFile, env);
  return spawnGateway(...args);
}

/**
 * Starts `sluice serve --config FILE [...serveArgs]` on the store as it is, and resolves once it logs
 * the ports it listens on (with `--workers N`, the primary logs them once every worker listens).
 */
export async function spawnGateway(
  configFile: string,
  env: NodeJS.ProcessEnv = process.env,
  startTimeoutMs = 15_000,
  cli = CLI,
  serveArgs: string[] = [],
): Promise<TestGateway> {
  const child = spawn(process.execPath, [cli, 'serve', '--config', configFile, ...serveArgs], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  createInterface({ input: child.stderr! }).on('line', (line) => output.push(line));

  const ports = await new Promise<{ port: number; admin_port: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start within ${startTimeoutMs} ms:\n${output.join('\n')}`)), startTimeoutMs);
    void exited.then((code) => reject(new Error(`gateway exited with ${code} before listening:\n${output.join('\n')}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      if (!line.includes('sluice listening')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as { port: number; admin_port: number });
    });
  });

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', waitMs = 15_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), waitMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  return {
    url: `http://127.0.0.1:${ports.port}`,
    port: ports.port,
    adminUrl: `http://127.0.0.1:${ports.admin_port}`,
    adminPort: ports.admin_port,
    process: child,
    pid: child.pid!,
    output,
    exited,
    stop,
  };
}

export function removeConfig(file: string): void {
  rmSync(path.dirname(file), { recursive: true, force: true });
}

/**
 * The usual fixture: a misbehaving upstream, and a gateway with one key of an unlimited tier and a
 * catch-all route to it. `overrides` replace top-level config sections.
 */
export async function startKeyedGateway(key: string, overrides: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = process.env) {
  const upstream = await startUpstream();
  const configFile = writeConfig(
    baseConfig({
      tiers: { t: { limits: [], scopes: ['*'] } },
      upstreams: { app: { targets: [upstream.url] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      keys: [{ name: 'k', tier: 't', key }],
      ...overrides,
    }),
  );
  const gateway = await startGateway(configFile, env);
  return {
    gateway,
    upstream,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      await gateway.stop(signal);
      await upstream.close();
      removeConfig(configFile);
    },
  };
}

export interface Stack {
  redis: TestRedis;
  upstream: TestUpstream;
  /** The first (or only) gateway. */
  gateway: TestGateway;
  /** Every replica, all on the one config. */
  gateways: TestGateway[];
  configFile: string;
}

/**
 * The usual suite set-up, registered as the beforeAll/afterAll of the file or describe block that
 * calls it: a Redis of its own (Redis may be emptied), a misbehaving upstream, and `replicas` gateways
 * (default 1) on one config that `config` builds from them. Read the parts from the returned object
 * once beforeAll has run.
 */
export function suiteStack(
  config: (parts: { redis: TestRedis; upstream: TestUpstream }) => Record<string, unknown> | Promise<Record<string, unknown>>,
  { replicas = 1 }: { replicas?: number } = {},
): Stack {
  const stack = {} as Stack;
  beforeAll(async () => {
    [stack.redis, stack.upstream] = await Promise.all([startRedis({ destructive: true }), startUpstream()]);
    stack.configFile = writeConfig(await config(stack));
    stack.gateways = await Promise.all(Array.from({ length: replicas }, () => startGateway(stack.configFile)));
    stack.gateway = stack.gateways[0];
  });
  afterAll(async () => {
    await Promise.all((stack.gateways ?? []).map((g) => g.stop()));
    await stack.upstream?.close();
    await stack.redis?.stop();
    if (stack.configFile) removeConfig(stack.configFile);
  });
  return stack;
}
