/**
 * A real Redis for each suite (DESIGN.md, "Tests"):
 *   1. SLUICE_TEST_REDIS_URL, for non-destructive suites;
 *   2. else a redis-server process on a free port;
 *   3. else a testcontainers Redis when a Docker engine answers;
 *   4. else a clear failure.
 * The shared Redis on 127.0.0.1:6379 is never used unless SLUICE_TEST_REDIS_URL points there.
 *
 * RedisServer (one owned redis-server process, extra arguments allowed) is the building block
 * for startRedisCluster() (3 masters, optionally a replica each) and startSentinelGroup()
 * (master, replica, 3 sentinels): they always run local processes, never the external instance or Docker.
 */
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import type { StartedRedisContainer } from '@testcontainers/redis';
import { freePort } from './ports';
import { waitForNoProblem } from './wait';
import { createRedisClient, waitUntilReady, type RedisClient } from '../../src/redis/client';

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

/** `password`: the server requires it (--requirepass); `url` then carries it. Local redis-server only. */
export async function startRedis(opts: { destructive?: boolean; password?: string } = {}): Promise<TestRedis> {
  const external = process.env.SLUICE_TEST_REDIS_URL;
  if (external && !opts.destructive && !opts.password) return externalRedis(external);

  const bin = findBinary('redis-server');
  if (bin) return RedisServer.start(bin, () => ({ password: opts.password }));
  if (opts.password) throw new Error('startRedis({ password }) needs a local redis-server');

  if (await dockerAnswers()) return ContainerRedis.start();

  throw new Error(INSTALL_HINT);
}

/**
 * Runs the installed redis-cli against 127.0.0.1:port; resolves with its stdout (trailing newline trimmed).
 * An error reply is not a failure for redis-cli: it is in stdout ("ERR ...").
 */
export function redisCli(port: number, ...args: string[]): Promise<string> {
  // Bounded: a paused server would otherwise hang the test.
  return runRedisCli(['-h', '127.0.0.1', '-p', String(port), ...args], 10_000);
}

function runRedisCli(args: string[], timeoutMs: number): Promise<string> {
  const bin = findBinary('redis-cli') ?? 'redis-cli';
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')} failed: ${err.message} ${stdout}${stderr}`.trim()));
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

/** What one redis-server needs beyond the defaults. */
interface ServerSetup {
  /** Passed first, as redis-server's config file (sentinel rewrites it, so it must be a file of its own). */
  configFile?: string;
  args?: string[];
  /** --requirepass */
  password?: string;
}

/** Called for each start attempt, which gets a fresh port and dir (so a setup may pick fresh extra ports too). */
type SetupFn = (port: number, dir: string) => ServerSetup | Promise<ServerSetup>;

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
    private readonly setup: ServerSetup,
  ) {}

  get url(): string {
    const auth = this.setup.password ? `:${encodeURIComponent(this.setup.password)}@` : '';
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts redis-server on a free port, retrying with a new port when the port was taken meanwhile. */
  static async start(bin: string, setup: SetupFn = () => ({})): Promise<RedisServer> {
    sweepLeftovers();
    let lastError: unknown;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${DIR_PREFIX}${process.pid}-`));
      try {
        const port = await freePort();
        const server = new RedisServer(port, dir, bin, await setup(port, dir));
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
      ...(this.setup.configFile ? [this.setup.configFile] : []),
      '--port', String(this.port), '--bind', '127.0.0.1', '--protected-mode', 'no',
      '--save', '', '--appendonly', 'no', '--dir', this.dir,
      '--pidfile', path.join(this.dir, 'redis.pid'), '--logfile', logFile, '--daemonize', 'no',
      ...(this.setup.args ?? []),
      ...(this.setup.password ? ['--requirepass', this.setup.password] : []),
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
      if ((await ping(this.port, 500, this.setup.password)) && !hasExited(child)) return;
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
// 4. Redis Cluster: 3 masters, optionally one replica each

export interface RedisAddress {
  host: string;
  port: number;
}

export interface TestRedisCluster {
  /** the 3 masters as of start (startup nodes for an ioredis Cluster); a killed one stays listed */
  nodes: RedisAddress[];
  /** replicas[i] replicates nodes[i]; empty without withReplicas */
  replicas: RedisAddress[];
  /**
   * SIGKILL master `index` and wait until its replica has been promoted: every live node reports
   * cluster_state:ok and agrees that live masters serve all 16384 slots (bounded, throws on timeout).
   * Requires withReplicas.
   */
  killMaster(index: number): Promise<void>;
  /** kill every process and remove the temp dirs; idempotent */
  stop(): Promise<void>;
}

const CLUSTER_SLOTS = 16384;
const TOPOLOGY_TIMEOUT_MS = 30_000;
const POLL_MS = 100;
// By default a master waits 5 s (repl-diskless-sync-delay) for more replicas before it starts a full sync.
const FAST_REPLICATION = ['--repl-diskless-sync-delay', '0'];

export async function startRedisCluster(opts: { withReplicas?: boolean } = {}): Promise<TestRedisCluster> {
  const bin = requireBinaries('startRedisCluster');
  const withReplicas = opts.withReplicas ?? false;
  const servers = await startServers(withReplicas ? 6 : 3, () => RedisServer.start(bin, clusterNodeSetup));
  try {
    return await LocalRedisCluster.create(servers, withReplicas);
  } catch (err) {
    await Promise.all(servers.map((server) => server.stop()));
    throw err;
  }
}

async function clusterNodeSetup(port: number, dir: string): Promise<ServerSetup> {
  // The default bus port is port + 10000, which may be taken or above 65535: pick one.
  let busPort = await freePort();
  while (busPort === port) busPort = await freePort();
  // prettier-ignore
  return {
    args: [
      '--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'),
      '--cluster-port', String(busPort), '--cluster-node-timeout', '1000',
      // Always let a replica take over; by default it refuses once its link has been down for 10 node timeouts.
      '--cluster-replica-validity-factor', '0',
      ...FAST_REPLICATION,
    ],
  };
}

class LocalRedisCluster implements TestRedisCluster {
  readonly nodes: RedisAddress[];
  readonly replicas: RedisAddress[];

  private constructor(
    private readonly servers: RedisServer[],
    private readonly masters: RedisServer[],
    replicas: RedisServer[],
  ) {
    this.nodes = masters.map(addressOf);
    this.replicas = replicas.map(addressOf);
  }

  static async create(servers: RedisServer[], withReplicas: boolean): Promise<LocalRedisCluster> {
    // prettier-ignore
    await runRedisCli([
      '--cluster', 'create', ...servers.map((s) => `127.0.0.1:${s.port}`),
      ...(withReplicas ? ['--cluster-replicas', '1'] : []), '--cluster-yes',
    ], TOPOLOGY_TIMEOUT_MS);
    await waitForNoProblem('the cluster to form', TOPOLOGY_TIMEOUT_MS, () => clusterProblem(servers, servers.length));

    // redis-cli chose which nodes replicate which: read it back, so that replicas[i] belongs to nodes[i].
    const view = parseClusterNodes(await redisCli(servers[0].port, 'CLUSTER', 'NODES'));
    const masterOf = (server: RedisServer) => view.find((n) => n.port === server.port)!.master;
    const masters = servers.filter((s) => masterOf(s) === undefined);
    const replicas = masters.flatMap((m) => servers.filter((s) => masterOf(s) === m.port));
    return new LocalRedisCluster(servers, masters, replicas);
  }

  async killMaster(index: number): Promise<void> {
    if (this.replicas.length === 0) throw new Error('killMaster() needs startRedisCluster({ withReplicas: true })');
    const victim = this.masters[index];
    if (!victim) throw new Error(`killMaster(${index}): there are ${this.masters.length} masters`);
    if (victim.pid === undefined) throw new Error(`killMaster(${index}): master on port ${victim.port} is not running`);
    await victim.kill();
    const live = this.servers.filter((s) => s.pid !== undefined);
    // The dead node stays known (flagged fail), hence servers.length.
    await waitForNoProblem(`a replica to take over from ${victim.port}`, TOPOLOGY_TIMEOUT_MS, () =>
      clusterProblem(live, this.servers.length),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((server) => server.stop()));
  }
}

interface ClusterNodeLine {
  port: number;
  flags: string[];
  /** port of its master, for a replica */
  master: number | undefined;
  slots: number;
}

/** Parses CLUSTER NODES: `<id> <ip:port@bus> <flags> <master-id|-> <ping> <pong> <epoch> <link> <slot ranges...>` */
function parseClusterNodes(text: string): ClusterNodeLine[] {
  const rows = text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => line.trim().split(' '));
  const portById = new Map(rows.map((r) => [r[0], Number(/:(\d+)@/.exec(r[1])![1])]));
  return rows.map((r) => ({
    port: portById.get(r[0])!,
    flags: r[2].split(','),
    master: r[3] === '-' ? undefined : portById.get(r[3]),
    slots: r
      .slice(8)
      .filter((range) => !range.startsWith('[')) // [slot->-id]: a migration in progress, not an owned slot
      .reduce((sum, range) => {
        const [from, to = from] = range.split('-').map(Number);
        return sum + to - from + 1;
      }, 0),
  }));
}

const UNHEALTHY_FLAGS = ['fail', 'fail?', 'handshake', 'noaddr'];

/**
 * undefined when every live node reports cluster_state:ok, knows `known` nodes, sees the live ones healthy,
 * agrees with the others on who replicates whom and who serves how many slots, live masters serve all
 * slots, and replicas have a working link to their master; otherwise what is still missing.
 */
async function clusterProblem(live: RedisServer[], known: number): Promise<string | undefined> {
  const livePorts = new Set(live.map((s) => s.port));
  const views = await Promise.all(
    live.map(async (server) => {
      const [info, nodes] = await Promise.all([
        redisCli(server.port, 'CLUSTER', 'INFO'),
        redisCli(server.port, 'CLUSTER', 'NODES').then(parseClusterNodes),
      ]);
      const me = `node ${server.port}`;
      if (!info.includes('cluster_state:ok')) return { problem: `${me}: cluster_state is not ok` };
      if (nodes.length !== known) return { problem: `${me} knows ${nodes.length} of ${known} nodes` };
      const liveNodes = nodes.filter((n) => livePorts.has(n.port));
      const unhealthy = liveNodes.find((n) => n.flags.some((f) => UNHEALTHY_FLAGS.includes(f)));
      if (unhealthy) return { problem: `${me} sees ${unhealthy.port} as ${unhealthy.flags.join(',')}` };
      const served = liveNodes.filter((n) => n.master === undefined).reduce((sum, n) => sum + n.slots, 0);
      if (served !== CLUSTER_SLOTS) return { problem: `${me}: live masters serve ${served} of ${CLUSTER_SLOTS} slots` };
      const myself = nodes.find((n) => n.flags.includes('myself'))!;
      if (myself.master !== undefined) {
        const replication = await redisCli(server.port, 'INFO', 'replication');
        if (!replication.includes('master_link_status:up')) return { problem: `${me}: link to its master is not up` };
      }
      const signature = liveNodes
        .map((n) => `${n.port}:${n.master ?? 'master'}:${n.slots}`)
        .sort()
        .join(' ');
      return { signature };
    }),
  );
  const problem = views.find((v) => v.problem)?.problem;
  if (problem) return problem;
  const signatures = new Set(views.map((v) => v.signature));
  if (signatures.size > 1) return `nodes disagree on the topology: ${[...signatures].join(' | ')}`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// 5. Sentinel: one master, one replica, three sentinels

export interface TestSentinelGroup {
  masterName: string;
  sentinels: RedisAddress[];
  /** the master as of start */
  master: RedisAddress;
  /** the replica as of start */
  replica: RedisAddress;
  /**
   * SENTINEL FAILOVER, then wait until every sentinel reports the promoted server as master (bounded);
   * resolves with it. The first call promotes `replica`, the next one `master` again, and so on.
   * The sentinels demote the old master only ~10-20 s later: until then it still accepts writes from
   * clients that stay connected to it (ioredis: use failoverDetector), and a second failover() first
   * waits for that demotion.
   */
  failover(): Promise<RedisAddress>;
  /** the master the sentinels report now (the first sentinel that answers) */
  currentMaster(): Promise<RedisAddress>;
  /** kill every process and remove the temp dirs; idempotent */
  stop(): Promise<void>;
}

const SENTINEL_MASTER_NAME = 'sluice-test';
// Sentinels reconfigure a returning old master after 8 s, polling replicas every 10 s.
const DEMOTION_TIMEOUT_MS = 40_000;

export async function startSentinelGroup(): Promise<TestSentinelGroup> {
  const bin = requireBinaries('startSentinelGroup');
  const started: RedisServer[] = [];
  try {
    const master = await RedisServer.start(bin, () => ({ args: FAST_REPLICATION }));
    started.push(master);
    const replicaof = ['--replicaof', '127.0.0.1', String(master.port)];
    const replica = await RedisServer.start(bin, () => ({ args: [...replicaof, ...FAST_REPLICATION] }));
    started.push(replica);
    // Sentinels find replicas in the master's INFO: let the replica attach before they start.
    await waitForNoProblem('the replica to sync', TOPOLOGY_TIMEOUT_MS, async () =>
      (await redisCli(replica.port, 'INFO', 'replication')).includes('master_link_status:up')
        ? undefined
        : `replica ${replica.port}: link to its master is not up`,
    );
    const sentinels = await startServers(3, () =>
      RedisServer.start(bin, (_port, dir) => sentinelSetup(dir, master.port)),
    );
    started.push(...sentinels);
    // Sentinels find each other through hello messages on the master, published every 2 s.
    await waitForNoProblem('the sentinels to know the master, the replica and each other', TOPOLOGY_TIMEOUT_MS, () =>
      sentinelProblem(sentinels, master.port, replica.port),
    );
    return new LocalSentinelGroup(master, replica, sentinels);
  } catch (err) {
    await Promise.all(started.map((server) => server.stop()));
    throw err;
  }
}

function sentinelSetup(dir: string, masterPort: number): ServerSetup {
  const name = SENTINEL_MASTER_NAME;
  const configFile = path.join(dir, 'sentinel.conf');
  // prettier-ignore
  fs.writeFileSync(configFile, [
    'sentinel resolve-hostnames no',
    `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
    `sentinel down-after-milliseconds ${name} 1000`,
    `sentinel failover-timeout ${name} 3000`,
    `sentinel parallel-syncs ${name} 1`,
    '',
  ].join('\n'));
  return { configFile, args: ['--sentinel'] };
}

/** undefined when every sentinel sees the master, the replica as a healthy candidate, and the two other sentinels. */
async function sentinelProblem(
  sentinels: RedisServer[],
  masterPort: number,
  replicaPort: number,
): Promise<string | undefined> {
  const problems = await Promise.all(
    sentinels.map(async (sentinel) => {
      const me = `sentinel ${sentinel.port}`;
      const [master, replicas, peers] = await Promise.all([
        sentinelCommand(sentinel.port, 'GET-MASTER-ADDR-BY-NAME'),
        sentinelCommand(sentinel.port, 'REPLICAS'),
        sentinelCommand(sentinel.port, 'SENTINELS'),
      ]);
      if (Number((master as string[])[1]) !== masterPort) return `${me} reports master ${JSON.stringify(master)}`;
      // master-link-status comes from the replica's own INFO: "ok" means the sentinel has polled it,
      // so it can promote it (otherwise SENTINEL FAILOVER answers NOGOODSLAVE).
      const replica = (replicas as Record<string, string>[]).find((r) => Number(r.port) === replicaPort);
      if (replica?.flags !== 'slave' || replica['master-link-status'] !== 'ok') {
        return `${me} does not see replica ${replicaPort} ready`;
      }
      const others = sentinels.filter((s) => s !== sentinel).map((s) => s.port);
      const known = (peers as Record<string, string>[])
        .filter((p) => p.flags === 'sentinel')
        .map((p) => Number(p.port));
      if (!others.every((port) => known.includes(port))) return `${me} knows sentinels ${known.join(',') || 'none'}`;
      return undefined;
    }),
  );
  return problems.find((p) => p !== undefined);
}

/** SENTINEL <subcommand> <name> as JSON (RESP3: replicas and sentinels come as objects). */
async function sentinelCommand(port: number, subcommand: string): Promise<unknown> {
  const output = await redisCli(port, '--json', 'SENTINEL', subcommand, SENTINEL_MASTER_NAME);
  if (output.startsWith('error:')) throw new Error(`sentinel ${port}: SENTINEL ${subcommand}: ${output}`);
  return JSON.parse(output);
}

class LocalSentinelGroup implements TestSentinelGroup {
  readonly masterName = SENTINEL_MASTER_NAME;
  readonly master: RedisAddress;
  readonly replica: RedisAddress;
  readonly sentinels: RedisAddress[];

  constructor(
    private readonly masterServer: RedisServer,
    private readonly replicaServer: RedisServer,
    private readonly sentinelServers: RedisServer[],
  ) {
    this.master = addressOf(masterServer);
    this.replica = addressOf(replicaServer);
    this.sentinels = sentinelServers.map(addressOf);
  }

  async failover(): Promise<RedisAddress> {
    // Whichever of the two is not the master now gets promoted (a second failover goes back).
    const current = await this.currentMaster();
    const target = current.port === this.master.port ? this.replica : this.master;
    // Right after a failover the old master is still a master until the sentinels demote it (~10-20 s).
    // Promoting it then would leave two masters: wait until it replicates from the current one.
    await waitForNoProblem(`${target.port} to replicate from ${current.port}`, DEMOTION_TIMEOUT_MS, async () => {
      const replication = await redisCli(target.port, 'INFO', 'replication');
      const synced = ['role:slave', `master_port:${current.port}`, 'master_link_status:up'];
      return synced.every((line) => replication.includes(line)) ? undefined : 'not a synced replica yet';
    });
    const sentinel = this.sentinelServers[0].port;
    const deadline = Date.now() + TOPOLOGY_TIMEOUT_MS;
    for (;;) {
      const reply = await redisCli(sentinel, 'SENTINEL', 'FAILOVER', this.masterName);
      if (reply === 'OK') break;
      // INPROG: a failover is still finishing; NOGOODSLAVE: the replica is still syncing or not polled yet.
      if (!/^(INPROG|NOGOODSLAVE)/.test(reply)) throw new Error(`SENTINEL FAILOVER on ${sentinel}: ${reply}`);
      if (Date.now() > deadline) {
        throw new Error(`SENTINEL FAILOVER on ${sentinel} still answers after ${TOPOLOGY_TIMEOUT_MS} ms: ${reply}`);
      }
      await sleep(POLL_MS);
    }
    await waitForNoProblem(`every sentinel to report ${target.port} as master`, TOPOLOGY_TIMEOUT_MS, async () => {
      const reports = await Promise.all(
        this.sentinelServers.map((s) => sentinelCommand(s.port, 'GET-MASTER-ADDR-BY-NAME') as Promise<string[]>),
      );
      const stale = reports.find((addr) => Number(addr[1]) !== target.port);
      return stale && `a sentinel still reports ${stale.join(':')}`;
    });
    return { ...target };
  }

  async currentMaster(): Promise<RedisAddress> {
    let lastError: unknown;
    for (const sentinel of this.sentinelServers) {
      try {
        const [host, port] = (await sentinelCommand(sentinel.port, 'GET-MASTER-ADDR-BY-NAME')) as string[];
        return { host, port: Number(port) };
      } catch (err) {
        lastError = err; // stopped or killed: ask the next one
      }
    }
    throw new Error(`no sentinel answered: ${String(lastError)}`);
  }

  async stop(): Promise<void> {
    await Promise.all([this.masterServer, this.replicaServer, ...this.sentinelServers].map((server) => server.stop()));
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers for the topologies

function requireBinaries(what: string): string {
  const bin = findBinary('redis-server');
  if (!bin || !findBinary('redis-cli')) {
    throw new Error(`${what}() needs local redis-server and redis-cli: apt-get install redis-server`);
  }
  return bin;
}

function addressOf(server: RedisServer): RedisAddress {
  return { host: server.host, port: server.port };
}

/** Starts `count` servers in parallel; if one fails, stops the others and rethrows. */
async function startServers(count: number, start: () => Promise<RedisServer>): Promise<RedisServer[]> {
  const results = await Promise.allSettled(Array.from({ length: count }, start));
  const servers = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failure) return servers;
  await Promise.all(servers.map((server) => server.stop()));
  throw failure.reason;
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

/** true when a raw PING on 127.0.0.1:port gets +PONG within timeoutMs (after AUTH when a password is given). */
export function ping(port: number, timeoutMs: number, password?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    // AUTH as an inline command: the test passwords are plain tokens without spaces.
    socket.once('connect', () => socket.write(password ? `AUTH ${password}\r\nPING\r\n` : 'PING\r\n'));
    const expected = password ? '+OK\r\n+PONG' : '+PONG';
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString();
      if (reply.split('\r\n').length > (password ? 2 : 1)) done(reply.startsWith(expected)); // -LOADING etc.: not ready yet
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

/**
 * A client as the gateway makes one (node-redis, redis/client.ts), for tests of the parts that take
 * one: `url`, or a Cluster's `nodes`. Resolves once it can take commands; close it with closeRedisClient.
 */
export async function gatewayRedisClient(target: { url: string } | { nodes: string[] }): Promise<RedisClient> {
  const settings = 'url' in target ? { url: target.url, key_prefix: '' } : { cluster: { nodes: target.nodes }, key_prefix: '' };
  const client = createRedisClient(settings, { timeoutMs: 2000 });
  client.on('error', () => undefined);
  await waitUntilReady(client, 20_000);
  return client;
}
