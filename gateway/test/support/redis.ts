/**
 * A real Redis for each suite (DESIGN.md, "Tests"):
 *   1. SLUICE_TEST_REDIS_URL, for non-destructive suites;
 *   2. else a redis-server process on a free port;
 *   3. else a testcontainers Redis when a Docker engine answers;
 *   4. else a clear failure.
 * The shared Redis on 127.0.0.1:6379 is never used unless SLUICE_TEST_REDIS_URL points there.
 *
 * RedisServer (one owned redis-server process, extra arguments allowed) is the building block
 * for the later startRedisCluster() / startSentinelGroup() helpers.
 */
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import type { StartedRedisContainer } from '@testcontainers/redis';
import { freePort } from './ports';

export interface TestRedis {
  url: string;
  host: string;
  port: number;
  /** false when it is the external SLUICE_TEST_REDIS_URL instance */
  owned: boolean;
  /** pid of the redis-server process (changes on restart); undefined for external or Docker */
  readonly pid: number | undefined;
  /** SIGSTOP (owned only; throws otherwise) */
  pause(): void;
  /** SIGCONT */
  resume(): void;
  /** SIGKILL and wait for exit (owned only) */
  kill(): Promise<void>;
  /** start again on the SAME port, empty (after kill) */
  restart(): Promise<void>;
  /** stop and clean up (idempotent); for the external instance: no-op */
  stop(): Promise<void>;
}

const INSTALL_HINT =
  'No Redis for the tests: install redis-server (apt-get install redis-server), ' +
  'or set SLUICE_TEST_REDIS_URL=redis://HOST:PORT (non-destructive suites only), or run a Docker engine.';

export async function startRedis(opts: { destructive?: boolean } = {}): Promise<TestRedis> {
  const external = process.env.SLUICE_TEST_REDIS_URL;
  if (external && !opts.destructive) return externalRedis(external);

  const bin = findBinary('redis-server');
  if (bin) return RedisServer.start(bin);

  if (await dockerAnswers()) return ContainerRedis.start();

  throw new Error(INSTALL_HINT);
}

/** Runs the installed redis-cli against 127.0.0.1:port; resolves with its stdout (trailing newline trimmed). */
export function redisCli(port: number, ...args: string[]): Promise<string> {
  const bin = findBinary('redis-cli') ?? 'redis-cli';
  return new Promise((resolve, reject) => {
    // Bounded: a paused server would otherwise hang the test.
    execFile(bin, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')} failed: ${err.message} ${stderr}`.trim()));
      else resolve(stdout.replace(/\r?\n$/, ''));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// 1. External instance

function externalRedis(url: string): TestRedis {
  const parsed = new URL(url);
  const notOwned = (what: string) => () => {
    throw new Error(`${what}() needs a Redis the test owns, SLUICE_TEST_REDIS_URL is shared: use startRedis({ destructive: true })`);
  };
  return {
    url,
    host: parsed.hostname,
    port: Number(parsed.port || 6379),
    owned: false,
    pid: undefined,
    pause: notOwned('pause'),
    resume: notOwned('resume'),
    kill: async () => notOwned('kill')(),
    restart: async () => notOwned('restart')(),
    stop: async () => {},
  };
}

// ---------------------------------------------------------------------------------------------
// 2. Our own redis-server process

const DIR_PREFIX = 'sluice-redis-';
const START_ATTEMPTS = 5;
const READY_TIMEOUT_MS = 10_000;

class AddressInUseError extends Error {}

class RedisServer implements TestRedis {
  readonly owned = true;
  readonly host = '127.0.0.1';
  private child: ChildProcess | undefined;
  private stderr = '';
  private stopped = false;

  private constructor(
    readonly port: number,
    /** temp dir: redis cwd (--dir), pid file and log; its name carries our pid so leftovers can be swept */
    readonly dir: string,
    private readonly bin: string,
    private readonly extraArgs: string[],
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts redis-server on a free port, retrying with a new port when the port was taken meanwhile. */
  static async start(bin: string, extraArgs: string[] = []): Promise<RedisServer> {
    sweepLeftovers();
    let lastError: unknown;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${DIR_PREFIX}${process.pid}-`));
      const server = new RedisServer(await freePort(), dir, bin, extraArgs);
      try {
        await server.launch();
        return server;
      } catch (err) {
        fs.rmSync(dir, { recursive: true, force: true });
        if (!(err instanceof AddressInUseError)) throw err;
        lastError = err;
      }
    }
    throw new Error(`redis-server could not start after ${START_ATTEMPTS} attempts: ${String(lastError)}`);
  }

  pause(): void {
    this.running().kill('SIGSTOP');
  }

  resume(): void {
    this.running().kill('SIGCONT');
  }

  async kill(): Promise<void> {
    const child = this.running();
    child.kill('SIGKILL');
    await exited(child);
    this.forget();
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error('restart() after stop()');
    if (this.child) await this.kill();
    // The port cannot change, so wait a little if something grabbed it meanwhile.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.launch();
      } catch (err) {
        if (!(err instanceof AddressInUseError) || attempt >= START_ATTEMPTS) throw err;
        await sleep(200);
      }
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.child) await this.kill(); // SIGKILL works on a paused process too
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private async launch(): Promise<void> {
    const logFile = path.join(this.dir, 'redis.log');
    fs.rmSync(logFile, { force: true });
    this.stderr = '';
    // prettier-ignore
    const args = [
      '--port', String(this.port), '--bind', '127.0.0.1', '--protected-mode', 'no',
      '--save', '', '--appendonly', 'no', '--dir', this.dir,
      '--pidfile', path.join(this.dir, 'redis.pid'), '--logfile', logFile, '--daemonize', 'no',
      ...this.extraArgs,
    ];
    // setpriv --pdeathsig KILL (util-linux): the kernel kills redis-server when this process dies,
    // even by SIGKILL. setpriv execs redis-server, so the pid stays the same.
    const setpriv = findBinary('setpriv');
    const [command, argv] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', this.bin, ...args]] : [this.bin, args];
    const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (chunk: Buffer) => {
      if (this.stderr.length < 4096) this.stderr += chunk.toString();
    });
    child.on('error', () => {}); // spawn errors show up as an exit before PING answers
    // A forgotten stop() must not keep jest alive: the 'exit' hook below kills the server instead.
    child.unref();
    (child.stderr as unknown as { unref(): void }).unref();
    this.child = child;
    liveServers.add(this);
    if (liveServers.size === 1) hostProcess.on('exit', killLeftoversOnExit);

    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (hasExited(child) || child.pid === undefined) break;
      // Checking the child is still alive after PONG: another server may own the port.
      if ((await ping(this.port, 500)) && !hasExited(child)) return;
      await sleep(50);
    }
    if (!hasExited(child)) child.kill('SIGKILL');
    await exited(child);
    this.forget();
    const output = `${readIfExists(logFile)}${this.stderr}`;
    if (output.includes('Address already in use')) throw new AddressInUseError(`port ${this.port} is in use`);
    throw new Error(`redis-server on port ${this.port} did not answer PING within ${READY_TIMEOUT_MS} ms:\n${output}`);
  }

  private running(): ChildProcess {
    if (!this.child) throw new Error(`redis-server on port ${this.port} is not running`);
    return this.child;
  }

  private forget(): void {
    this.child = undefined;
    liveServers.delete(this);
    if (liveServers.size === 0) hostProcess.off('exit', killLeftoversOnExit);
  }

  /** Synchronous last resort, from process 'exit'. */
  killNow(): void {
    try {
      if (this.child?.pid) process.kill(this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// jest gives each test file a copy of `process` whose 'exit' event never fires: use the host's.
const hostProcess = vm.runInThisContext('process') as NodeJS.Process;

// Servers still running; the 'exit' listener is only installed while this is non-empty,
// so it does not pile up across test files.
const liveServers = new Set<RedisServer>();

function killLeftoversOnExit(): void {
  for (const server of liveServers) server.killNow();
}

/**
 * Kills redis-servers left by a test process that died without running its 'exit' hook
 * (e.g. a SIGKILLed jest worker): their temp dir names carry the owner's pid.
 */
function sweepLeftovers(): void {
  let names: string[];
  try {
    names = fs.readdirSync(os.tmpdir());
  } catch {
    return;
  }
  for (const name of names) {
    const match = new RegExp(`^${DIR_PREFIX}(\\d+)-`).exec(name);
    if (!match || isAlive(Number(match[1]))) continue;
    const dir = path.join(os.tmpdir(), name);
    try {
      const pid = Number(fs.readFileSync(path.join(dir, 'redis.pid'), 'utf8'));
      // Only kill it if it really is a redis-server running in that dir (its cwd is --dir).
      if (pid > 0 && fs.readlinkSync(`/proc/${pid}/cwd`) === fs.realpathSync(dir)) process.kill(pid, 'SIGKILL');
    } catch {
      // no pid file, process gone, or no /proc: nothing to kill
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Docker fallback (testcontainers is only loaded here)

async function dockerAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await withTimeout(getContainerRuntimeClient(), 20_000);
    return true;
  } catch {
    return false;
  }
}

class ContainerRedis implements TestRedis {
  readonly owned = true;
  readonly host = '127.0.0.1';
  readonly pid = undefined;
  private container: StartedRedisContainer | undefined;
  private stopped = false;

  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<ContainerRedis> {
    const redis = new ContainerRedis(await freePort());
    await redis.launch();
    return redis;
  }

  // pause()/resume() must be synchronous: use the docker CLI.
  pause(): void {
    execFileSync('docker', ['pause', this.running().getId()]);
  }

  resume(): void {
    execFileSync('docker', ['unpause', this.running().getId()]);
  }

  async kill(): Promise<void> {
    await this.running().stop({ timeout: 0 });
    this.container = undefined;
  }

  async restart(): Promise<void> {
    if (this.container) await this.kill();
    await this.launch();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.container) await this.kill();
  }

  private async launch(): Promise<void> {
    const { RedisContainer } = await import('@testcontainers/redis');
    // A fixed host port, so restart() comes back on the same one.
    this.container = await new RedisContainer('redis:7.0')
      .withExposedPorts({ container: 6379, host: this.port })
      .withCommand(['redis-server', '--save', '', '--appendonly', 'no'])
      .start();
  }

  private running(): StartedRedisContainer {
    if (!this.container) throw new Error(`Redis container on port ${this.port} is not running`);
    return this.container;
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/bin', '/usr/local/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** true when a raw PING on 127.0.0.1:port gets +PONG within timeoutMs. */
export function ping(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG')); // -LOADING etc.: not ready yet
    });
    socket.once('error', () => done(false));
  });
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function exited(child: ChildProcess): Promise<void> {
  // No pid: spawn itself failed, there is no process to wait for.
  if (hasExited(child) || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readIfExists(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
