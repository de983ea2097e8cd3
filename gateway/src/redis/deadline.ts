import { performance } from 'node:perf_hooks';
import calculateSlot from 'cluster-key-slot';
import { StoreBusyError, StoreUnavailableError } from './errors';
import { closeRedisClient, createNodeClient, isCluster, isErrorReply, isReady, type RedisClient, type RedisSettings } from './client';

/** Redis answered nothing for `timeout_ms` (frozen, gone, partitioned): an outage, for the failure policy. */
export class RedisSilentError extends Error {
  constructor(silentMs: number) {
    super(`Redis answered nothing for ${Math.round(silentMs)} ms`);
    this.name = 'RedisSilentError';
  }
}

/** Redis is answering, but this call waited `max_wait_ms` for its own answer: overload, not an outage. */
export class RedisBusyError extends Error {
  constructor(waitedMs: number) {
    super(`Redis is answering, but not this call within ${Math.round(waitedMs)} ms`);
    this.name = 'RedisBusyError';
  }
}

/**
 * Bounds every request-path Redis call, judging Redis by Redis, never by this replica's own lag.
 *
 * A call fails when Redis is silent — nothing answered on the node that serves the call's key for
 * `timeoutMs`: the outage the failure policy is for — or, while Redis keeps answering, once the call
 * has waited `maxWaitMs` (RedisBusyError: the answer is late, and a local decision would over-admit).
 *
 * Why not a plain timer per call: on a saturated event loop the timer fires late, in the same turn in
 * which the reply already sitting in the socket would be read, and timers run first; with
 * pipelining a command also waits for the pipeline ahead of it, and a burst's pipeline of
 * hundreds of scripts can keep Redis busy past the timeout. A busy replica then read as a failing
 * Redis (a burst admitted 3.8× its limit). So when the timer fires we first let the loop read what
 * has arrived (setImmediate runs after the poll phase), and we count as answers the PINGs of a
 * pulse: while calls are outstanding, each node gets a PING every timeoutMs / 2 on a connection of
 * its own. Redis serves its connections in turn, so the PING is answered even while our pipeline is
 * being worked through, and is not answered by a frozen or vanished Redis.
 */
export class RedisDeadline {
  private readonly pulses = new Map<string, Pulse>();

  constructor(
    private readonly client: RedisClient,
    /** How to reach Redis, for the pulses' connections of their own. */
    private readonly settings: RedisSettings,
    private readonly timeoutMs: number,
    private readonly maxWaitMs: number,
  ) {
    // Connected ahead of need: a pulse that first connects in the middle of a burst would be late.
    if (isCluster(client)) client.on('connect', () => client.masters.forEach((master) => this.pulse(master.address, master)));
    else this.pulse('');
  }

  /** `call()` under the deadline; `key` is one key the call touches (it picks the Cluster node). */
  run<T>(key: string, call: () => Promise<T>): Promise<T> {
    const pulse = this.laneOf(key);
    const outstanding = new Outstanding(performance.now());
    const promise = new Promise<T>((resolve, reject) => {
      outstanding.resolve = resolve as (value: unknown) => void;
      outstanding.reject = reject;
    });
    pulse.begin(outstanding);
    call().then(
      (value) => pulse.settle(outstanding, value),
      (err: Error) => pulse.fail(outstanding, err, isErrorReply(err)), // an error reply is still an answer
    );
    return promise;
  }

  /** The pulse of one server (a Cluster master's `node`, else the one server the settings name). */
  private pulse(lane: string, node?: { host: string; port: number }): Pulse {
    let pulse = this.pulses.get(lane);
    if (!pulse) {
      const connection = createNodeClient(this.settings, this.timeoutMs, node);
      this.pulses.set(lane, (pulse = new Pulse(connection, this.timeoutMs, this.maxWaitMs, () => isReady(this.client))));
    }
    return pulse;
  }

  /** The pulse of the server that answers for `key`: in a Cluster the master of its slot, else the one server. */
  private laneOf(key: string): Pulse {
    if (!isCluster(this.client)) return this.pulse('');
    const master = this.client.slots[calculateSlot(key)]?.master;
    return master ? this.pulse(master.address, master) : this.pulse('');
  }

  close(): void {
    for (const pulse of this.pulses.values()) pulse.close();
    this.pulses.clear();
  }
}

/** One call waiting for its answer, in its node's list (oldest first). */
class Outstanding {
  settled = false;
  resolve!: (value: unknown) => void;
  reject!: (err: unknown) => void;
  prev?: Outstanding;
  next?: Outstanding;

  constructor(readonly startedAt: number) {}
}

/**
 * One node's signs of life and the calls waiting for it. It notes when the node last answered
 * anything, and while calls are outstanding it sends a PING every `timeoutMs / 2` on a connection of
 * its own (one PING at a time; none while idle).
 *
 * One timer judges all of the node's outstanding calls. They are listed oldest first, and every one
 * has the same timeout and the same wait, so a call is failed no later than any call older than it:
 * each judgement runs down the list until it finds a call that may wait on, and the timer is set for
 * that one. An answered call leaves the list at once. (A timer per call and the closures around it
 * cost more than the rest of the deadline on every request.)
 */
class Pulse {
  lastAnswerAt = 0;
  private oldest?: Outstanding;
  private newest?: Outstanding;
  private pingTimer?: NodeJS.Timeout;
  private judgeTimer?: NodeJS.Timeout;
  private pinging = false;
  /** When each recent tick ran, and how late: [at, lateMs], oldest first. */
  private readonly stalls: Array<[number, number]> = [];
  private nextTickAt = 0;

  constructor(
    private readonly connection: RedisClient,
    private readonly timeoutMs: number,
    private readonly maxWaitMs: number,
    /** Whether the main client is connected: a call on a dropped connection fails at its judgement. */
    private readonly clientReady: () => boolean,
  ) {
    connection.on('error', () => undefined); // the main client reports connection errors
  }

  /** A call to this node is under way: listed, judged in time, and the pulse beats until none is. */
  begin(call: Outstanding): void {
    if (this.newest) {
      this.newest.next = call;
      call.prev = this.newest;
    } else {
      this.oldest = call;
    }
    this.newest = call;
    if (this.judgeTimer === undefined) this.judgeIn(call.startedAt + this.timeoutMs);
    if (this.pingTimer === undefined) this.startBeating();
  }

  /** The call's answer: Redis was heard from. Nothing, if the call was failed already. */
  settle(call: Outstanding, value: unknown): void {
    if (call.settled) return;
    this.end(call);
    this.answered();
    call.resolve(value);
  }

  /** The call fails (`answered`: with an error reply, which still shows Redis answering). Nothing, if it was settled already. */
  fail(call: Outstanding, err: Error, answered = false): void {
    if (call.settled) return;
    this.end(call);
    if (answered) this.answered();
    call.reject(err);
  }

  /** Off the list. */
  private end(call: Outstanding): void {
    call.settled = true;
    const { prev, next } = call;
    if (prev) prev.next = next;
    else this.oldest = next;
    if (next) next.prev = prev;
    else this.newest = prev;
    call.prev = call.next = undefined;
  }

  private judgeIn(at: number): void {
    this.judgeTimer = setTimeout(this.onJudgeTimer, Math.max(1, Math.ceil(at - performance.now())));
  }

  // Silence is measured up to when the timer fired, and judged once the loop has polled: by then
  // everything Redis sent before that moment has been read, however long the loop took to get here.
  private readonly onJudgeTimer = (): void => {
    const firedAt = performance.now();
    setImmediate(() => this.judge(firedAt)); // after the poll phase: what the socket holds is read
  };

  /**
   * Fails the calls that are due, oldest first: Redis silent for timeoutMs since the call began or
   * last answered (or the client disconnected), or, while it answers, the call waited maxWaitMs.
   * Time in which this process could not run (its pulse ticks came late: the machine or its own loop
   * was busy) does not count as silence: Redis, on the same cores, may have been kept from running too.
   */
  private judge(firedAt: number): void {
    this.judgeTimer = undefined;
    for (let call = this.oldest; call; call = this.oldest) {
      const quietSince = Math.max(this.lastAnswerAt, call.startedAt);
      const silentMs = firedAt - quietSince - this.stalledBetween(quietSince, firedAt);
      const waitedMs = firedAt - call.startedAt;
      if (silentMs >= this.timeoutMs || !this.clientReady()) {
        this.fail(call, new RedisSilentError(silentMs));
      } else if (waitedMs >= this.maxWaitMs) {
        this.fail(call, new RedisBusyError(waitedMs));
      } else {
        // Redis answered lately: judge again once it may have been quiet for timeoutMs (or at maxWaitMs).
        this.judgeIn(Math.min(firedAt + this.timeoutMs - silentMs, call.startedAt + this.maxWaitMs));
        return;
      }
    }
  }

  private startBeating(): void {
    this.ping();
    const interval = Math.max(1, this.timeoutMs / 2);
    this.nextTickAt = performance.now() + interval;
    this.pingTimer = setInterval(() => {
      this.noteStall(interval);
      if (this.oldest) this.ping();
      else this.stopBeating();
    }, interval);
    this.pingTimer.unref();
  }

  /** Records how late this tick ran: the loop could not run in the meantime. Keeps a few seconds. */
  private noteStall(interval: number): void {
    const now = performance.now();
    const late = now - this.nextTickAt;
    this.nextTickAt = now + interval;
    if (late > 1) this.stalls.push([now, late]);
    while (this.stalls.length > 0 && this.stalls[0][0] < now - 10_000) this.stalls.shift();
  }

  /** How long, between `from` and `to`, this process was kept from running (as its late ticks saw it). */
  stalledBetween(from: number, to: number): number {
    let total = 0;
    for (const [at, late] of this.stalls) {
      if (at <= from || at - late >= to) continue;
      total += Math.min(at, to) - Math.max(at - late, from);
    }
    return total;
  }

  answered(): void {
    this.lastAnswerAt = performance.now();
  }

  private ping(): void {
    if (this.pinging) return;
    this.pinging = true;
    this.connection.ping().then(
      () => {
        this.pinging = false;
        this.answered();
      },
      () => (this.pinging = false),
    );
  }

  private stopBeating(): void {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  close(): void {
    this.stopBeating(); // calls still outstanding are judged as before
    void closeRedisClient(this.connection);
  }
}

/** `call()` under `deadline` when there is one (the gateway), else as it is (tests, the CLI's usage reads). */
export function withinDeadline<T>(deadline: RedisDeadline | undefined, key: string, call: () => Promise<T>): Promise<T> {
  return deadline ? deadline.run(key, call) : call();
}

/** A failed store call as the gateway sees it: overload (StoreBusyError) told apart from an outage. */
export function storeFailure(what: string, err: unknown): StoreUnavailableError {
  const message = `${what} failed: ${(err as Error).message}`;
  return err instanceof RedisBusyError ? new StoreBusyError(message, { cause: err }) : new StoreUnavailableError(message, { cause: err });
}
