// Starting, pinning, measuring and stopping the processes of a benchmark case.
//
// Every process is registered in a group; `group.stop()` ends them at the end of a scenario (also when
// it failed), and an exit hook SIGKILLs whatever is still alive if the harness itself dies.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether a command exists on PATH (without running it). */
export function hasCommand(name) {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

// On 2 cores the proxy under test gets core 0 to itself; the upstream, Redis and the load generator
// share core 1, so they never steal the proxy's CPU (and the proxy's CPU is what we measure).
export const CORE = { proxy: 0, helpers: 1 };
const canPin = hasCommand('taskset');
export const pinning = canPin ? 'taskset (proxy under test on core 0; upstream, Redis, load generator on core 1)' : 'none (taskset not found)';

/** Clock ticks per second of /proc/<pid>/stat's utime and stime. */
export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU time (user + system, all threads) a process has used so far, in microseconds. */
export function cpuMicros(pid) {
  return statCpuMicros(`/proc/${pid}/stat`);
}

/** The same for one thread of a process (`tid` = `pid`: its main thread). */
export function threadCpuMicros(pid, tid) {
  return statCpuMicros(`/proc/${pid}/task/${tid}/stat`);
}

function statCpuMicros(file) {
  const stat = readFileSync(file, 'utf8');
  // The command name (field 2) may hold spaces; fields after it are fixed: utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

/** A process's live descendants (children first), from /proc/<pid>/task/<tid>/children. */
function descendants(pid) {
  const kids = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      kids.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
    }
  } catch {
    return []; // it just exited
  }
  return kids.flatMap((kid) => [kid, ...descendants(kid)]);
}

/** cpuMicros of a process and its live descendants (sluice --workers N: the primary and its workers). */
export function treeCpuMicros(pid) {
  return [pid, ...descendants(pid)].reduce((sum, p) => {
    try {
      return sum + cpuMicros(p);
    } catch {
      return sum; // exited between the listing and the read
    }
  }, 0);
}

/** Resident set size in bytes. */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Polls `check` (an async predicate) every 100 ms until it holds; bounded by `timeoutMs`, and given
 * up at once if `child` (the process being waited for) has exited.
 */
export async function waitFor(what, check, timeoutMs = 15_000, child = null) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`${what}: the process exited (${child.exitCode ?? child.signalCode})`);
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms`);
}

export function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

const alive = new Set();
process.on('exit', () => {
  for (const child of alive) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

/**
 * A set of processes that live and die together. `start` spawns one (pinned to `core` when taskset
 * exists: taskset execs the command, so the pid is the command's own) and, with `readyLine`, resolves
 * with the first parsed stdout line that `readyLine` accepts.
 */
export class Group {
  children = [];
  cleanups = [];

  /** Something to undo at stop (e.g. closing a client), before the processes are ended. */
  onStop(fn) {
    this.cleanups.push(fn);
  }

  async start(name, cmd, args, { core, env = {}, readyLine, stdout = 'ignore', stderrPrefix = true } = {}) {
    const [file, argv] = canPin && core !== undefined ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args];
    const child = spawn(file, argv, {
      env: { ...process.env, ...env },
      stdio: ['ignore', readyLine || stdout === 'pipe' ? 'pipe' : 'ignore', 'pipe'],
    });
    child.benchName = name;
    this.children.push(child);
    alive.add(child);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.exited = exited;
    exited.then(() => alive.delete(child));
    // Their stderr is shown (prefixed), so a crashing gateway explains itself.
    createInterface({ input: child.stderr }).on('line', (line) => {
      if (stderrPrefix) process.stderr.write(`  [${name}] ${line}\n`);
    });
    if (!readyLine) {
      await new Promise((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
      return { child, pid: child.pid };
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no ready line after 15 s`)), 15_000);
      exited.then(({ code, signal }) => reject(new Error(`${name} exited early (${code ?? signal})`)));
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        let parsed;
        try {
          parsed = readyLine(line);
        } catch {
          return;
        }
        if (parsed) {
          clearTimeout(timer);
          resolve({ child, pid: child.pid, ...parsed });
        }
      });
    });
  }

  /** SIGTERM, then SIGKILL whatever has not exited after `graceMs`. */
  async stop(graceMs = 3000) {
    for (const fn of this.cleanups.splice(0)) await Promise.resolve().then(fn).catch(() => {});
    const running = this.children.filter((c) => c.exitCode === null && c.signalCode === null);
    for (const child of running) child.kill('SIGTERM');
    await Promise.race([Promise.all(running.map((c) => c.exited)), sleep(graceMs)]);
    for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.race([Promise.all(running.map((c) => c.exited)), sleep(1000)]);
    this.children = [];
  }
}

/** Runs `body(group)` and stops the group's processes afterwards, whatever happened. */
export async function withGroup(body) {
  const group = new Group();
  try {
    return await body(group);
  } finally {
    await group.stop();
  }
}

/**
 * Runs a short-lived command to completion (pinned like `start`), collecting stdout; killed after
 * `timeoutMs` so no load run can hang the harness.
 */
export function runToEnd(cmd, args, { core, timeoutMs }) {
  const [file, argv] = canPin && core !== undefined ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args];
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  alive.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      alive.delete(child);
      if (signal) reject(new Error(`${cmd} killed (${signal}) after ${timeoutMs} ms: ${stderr.trim()}`));
      else resolve({ code, stdout, stderr });
    });
  });
}
