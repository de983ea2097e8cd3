import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { isOurs, type MetricsJson, type PrimaryMessage, type WorkerMessage } from './messages';

// A worker that dies is replaced after RESTART_BASE_MS, doubling for each one in a row that lived less
// than STABLE_MS (a crash loop must not spin the CPU), up to RESTART_MAX_MS.
const RESTART_BASE_MS = 250;
const RESTART_MAX_MS = 10_000;
const STABLE_MS = 10_000;
// A scrape waits this long for every worker's metrics, then fails (Prometheus retries) rather than
// showing partial sums, which would look like counter resets.
const METRICS_TIMEOUT_MS = 3_000;

interface WorkerState {
  readonly worker: Worker;
  readonly startedAt: number;
  listening: boolean;
  /** undefined until the worker first reports */
  notReady: string | null | undefined;
}

/**
 * The primary's workers (node:cluster): forks `size` of them, replaces any that dies, and knows
 * whether all of them are ready. Every worker runs the same CLI command as the primary.
 */
export class WorkerPool {
  private readonly states = new Map<number, WorkerState>(); // by cluster worker id
  private started = false;
  private stopping = false;
  private quickExits = 0;
  private metricsRequests = 0;
  private onStartFailure?: (err: Error) => void;
  private onAllListening?: (port: number) => void;
  private onAllExited?: () => void;
  /** While stopping: whether every worker so far exited with code 0. */
  private cleanExits = true;

  constructor(
    private readonly size: number,
    private readonly log: Logger,
  ) {
    // Round-robin (node's default on Linux, said explicitly): the primary accepts and hands each
    // connection to the next worker; the kernel's own spreading (SCHED_NONE) favours a few processes.
    cluster.schedulingPolicy = cluster.SCHED_RR;
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal));
  }

  /** Forks every worker; resolves with the shared public port once all listen, rejects if one exits first. */
  start(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.onAllListening = resolve;
      this.onStartFailure = reject;
      for (let i = 0; i < this.size; i++) this.fork();
    });
  }

  private fork(): void {
    const worker = cluster.fork();
    const state: WorkerState = { worker, startedAt: Date.now(), listening: false, notReady: undefined };
    this.states.set(worker.id, state);
    // A send to a worker that just died fails here; its exit is handled below, in onExit.
    worker.on('error', (err: Error) => this.log.warn({ worker: worker.id, err: err.message }, 'IPC with a worker failed'));
    worker.on('message', (message: unknown) => {
      if (isOurs<WorkerMessage>(message)) this.onMessage(state, message);
    });
    this.log.info({ worker: worker.id, pid: worker.process.pid }, 'worker started');
  }

  private onMessage(state: WorkerState, message: WorkerMessage): void {
    if (message.type === 'sluice:readiness') state.notReady = message.reason;
    else if (message.type === 'sluice:listening') {
      state.listening = true;
      if (!this.started && [...this.states.values()].filter((s) => s.listening).length === this.size) {
        this.started = true;
        this.onAllListening?.(message.port);
      }
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const state = this.states.get(worker.id);
    this.states.delete(worker.id);
    if (this.stopping) {
      this.cleanExits &&= code === 0;
      if (this.states.size === 0) this.onAllExited?.();
      return;
    }
    const pid = worker.process.pid;
    if (!this.started) {
      this.stopping = true;
      for (const other of this.states.values()) other.worker.process.kill('SIGKILL');
      this.onStartFailure?.(new Error(`worker ${worker.id} (pid ${pid}) exited with ${signal ?? code} before it listened`));
      return;
    }
    const lived = Date.now() - (state?.startedAt ?? 0);
    this.quickExits = lived < STABLE_MS ? this.quickExits + 1 : 0;
    const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** Math.max(0, this.quickExits - 1));
    this.log.error({ worker: worker.id, pid, code, signal, lived_ms: lived, restart_in_ms: delay }, 'worker exited; starting a new one');
    setTimeout(() => {
      if (!this.stopping) this.fork();
    }, delay);
  }

  /** Null when every worker is up and ready; else the first reason one is not (or the pool's own). */
  notReadyReason(): string | null {
    if (this.stopping) return 'draining';
    const states = [...this.states.values()];
    if (states.length < this.size || states.some((s) => s.notReady === undefined)) return 'worker_starting';
    return states.find((s) => s.notReady !== null)?.notReady ?? null;
  }

  broadcast(message: PrimaryMessage): void {
    for (const { worker } of this.states.values()) if (worker.isConnected()) worker.send(message);
  }

  /** Every connected worker's registry as JSON (for AggregatorRegistry.aggregate). */
  collectMetrics(): Promise<MetricsJson[]> {
    const id = ++this.metricsRequests;
    const asks = [...this.states.values()].filter((s) => s.worker.isConnected()).map(({ worker }) => askMetrics(worker, id));
    return Promise.all(asks);
  }

  /**
   * Tells every worker to drain (each follows lifecycle.drain_delay and grace), and resolves once all
   * have exited: true when each exited 0. Workers still there after `timeoutMs` are killed.
   */
  drain(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    const allExited = new Promise<void>((resolve) => {
      if (this.states.size === 0) resolve();
      this.onAllExited = resolve;
    });
    this.broadcast({ type: 'sluice:drain' });
    const timer = setTimeout(() => {
      for (const { worker } of this.states.values()) {
        this.log.error({ worker: worker.id, pid: worker.process.pid }, 'worker still running after the drain: killed');
        worker.process.kill('SIGKILL');
      }
    }, timeoutMs);
    return allExited.then(() => {
      clearTimeout(timer);
      return this.cleanExits;
    });
  }
}

function askMetrics(worker: Worker, id: number): Promise<MetricsJson> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => settle(new Error(`worker ${worker.id} sent no metrics within ${METRICS_TIMEOUT_MS} ms`)), METRICS_TIMEOUT_MS);
    const onMessage = (message: unknown) => {
      if (isOurs<WorkerMessage>(message) && message.type === 'sluice:metrics' && message.id === id) settle(undefined, message.metrics);
    };
    const onExit = () => settle(new Error(`worker ${worker.id} exited during a scrape`));
    function settle(err: Error | undefined, metrics?: MetricsJson) {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', onExit);
      if (err) reject(err);
      else resolve(metrics!);
    }
    worker.on('message', onMessage);
    worker.once('exit', onExit);
    worker.send({ type: 'sluice:metrics', id } satisfies PrimaryMessage);
  });
}
