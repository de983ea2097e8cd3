import { performance } from 'node:perf_hooks';
import type { LimitDecision, Limiter, LimitRequest, WindowSpec, WindowState } from './limiter';
import { observeRedis } from '../metrics/registry';
import { redisScript, runScriptCommand, scriptCommand, type RedisClient } from '../redis/client';
import { storeFailure, withinDeadline, type RedisDeadline } from '../redis/deadline';
import { calendarPeriod } from './calendar';
import { SLIDING_WINDOW } from './scripts';
import { SlotLeases } from './slots';

const SCRIPT = redisScript(SLIDING_WINDOW);

/** Each window's script arguments (limit, negative for a shadow window; length), as strings once per windows list. */
const argumentsOf = new WeakMap<readonly WindowSpec[], readonly string[]>();
function windowArguments(windows: readonly WindowSpec[]): readonly string[] {
  let args = argumentsOf.get(windows);
  if (!args) argumentsOf.set(windows, (args = windows.flatMap((w) => [`${w.shadow ? -w.limit : w.limit}`, `${w.windowMs}`])));
  return args;
}

/**
 * The sliding-window limiter in Redis: one EVALSHA per request, whatever the number of windows,
 * account windows and quota.
 *
 * Counter names. The part in braces is the hash tag, so every counter of one request is in one slot:
 *   <prefix>rl:{<key id>}:<window>                   a key without an account (as before accounts)
 *   <prefix>rl:{@<account>}:<key id>:<window>        a key of an account: its own windows
 *   <prefix>rl:{@<account>}:account:<window>         the account's windows, shared by its keys
 *   <prefix>rl:{…}:[<key id>:]quota:<period>:<first day>   the calendar quota (the script adds the day)
 *   <prefix>rl:{…}:[<key id>:]slots                   concurrency leases (a sorted set, see slots.ts)
 * A tier with a concurrency limit costs one more call per request: the slot's ZREM when it ends.
 */
export class RedisLimiter implements Limiter {
  private readonly slots: SlotLeases;

  constructor(
    private readonly client: RedisClient,
    private readonly prefix: string,
    /** Bounds each call (see redis/deadline.ts); undefined: unbounded (tests, the CLI). */
    private readonly deadline?: RedisDeadline,
  ) {
    this.slots = new SlotLeases(client, deadline);
  }

  /**
   * `nowMs` replaces Redis TIME: only for tests that replay exact timings. Not an async function: the
   * reply is timed and read in one reaction to the call (this runs on every request).
   */
  check(request: LimitRequest, nowMs?: number): Promise<LimitDecision> {
    const { windows, quota, account, concurrency } = request;
    const keyBase = account === undefined ? `${this.prefix}rl:{${request.subject}}:` : `${this.prefix}rl:{@${account}}:${request.subject}:`;
    const accountBase = account === undefined ? '' : `${this.prefix}rl:{@${account}}:account:`; // perAccount windows come with an account
    const command = scriptCommand(SCRIPT, windows.length + (quota ? 1 : 0) + (concurrency ? 1 : 0));
    for (const w of windows) command.push((w.perAccount ? accountBase : keyBase) + w.name);
    if (quota) command.push(`${keyBase}quota:${quota.period}`);
    const slotKey = concurrency ? `${keyBase}slots` : '';
    if (concurrency) command.push(slotKey);
    const firstKey = command[3];
    command.push(`${request.cost}`, nowMs === undefined ? '' : `${nowMs}`);
    for (const arg of windowArguments(windows)) command.push(arg);
    if (quota) command.push('quota', `${quota.shadow ? -quota.limit : quota.limit}`, quota.period);
    let token = '';
    if (concurrency) {
      token = request.cost > 0 ? this.slots.nextToken() : ''; // a peek takes no slot
      command.push('slot', `${concurrency.shadow ? -concurrency.limit : concurrency.limit}`, `${concurrency.leaseMs}`, token);
    }
    const startedAt = performance.now();
    const call = () => runScriptCommand<number[]>(this.client, SCRIPT, command);
    let pending: Promise<number[]>;
    try {
      pending = withinDeadline(this.deadline, firstKey, call);
    } catch (err) {
      pending = Promise.reject(err);
    }
    return pending.then(
      (reply) => {
        observeRedis('ratelimit', startedAt);
        return this.decision(request, reply, slotKey, token);
      },
      (err: unknown) => {
        observeRedis('ratelimit', startedAt, true);
        throw storeFailure('Redis rate limit', err);
      },
    );
  }

  /** The script's reply as a decision; `slotKey` and `token` name the slot the request took, if any. */
  private decision(request: LimitRequest, reply: number[], slotKey: string, token: string): LimitDecision {
    const { windows, quota, concurrency } = request;
    const states: WindowState[] = windows.map((w, i) => ({
      limit: w.limit,
      windowMs: w.windowMs,
      used: Number(reply[2 + i * 3]),
      blocking: Number(reply[3 + i * 3]) === 1,
      resetMs: Number(reply[4 + i * 3]),
      shadow: w.shadow,
    }));
    const decidedAt = Number(reply[1]);
    if (quota) {
      const at = 2 + windows.length * 3;
      const resetMs = Number(reply[at + 2]);
      states.push({
        limit: quota.limit,
        windowMs: resetMs - calendarPeriod(decidedAt, quota.period).startMs,
        used: Number(reply[at]),
        blocking: Number(reply[at + 1]) === 1,
        resetMs,
        shadow: quota.shadow,
        calendar: quota.period,
      });
    }
    const allowed = Number(reply[0]) === 1;
    if (!concurrency) return { allowed, nowMs: decidedAt, windows: states };
    const at = reply.length - 3;
    const state = { limit: concurrency.limit, inFlight: Number(reply[at]), blocking: Number(reply[at + 1]) === 1, shadow: concurrency.shadow };
    const taken = allowed && request.cost > 0;
    const release = taken ? this.slots.hold(slotKey, token, concurrency.leaseMs) : undefined;
    return { allowed, nowMs: decidedAt, windows: states, concurrency: state, release };
  }

  // The client belongs to whoever created it (it is shared with the key store).
  async close(): Promise<void> {
    this.slots.close();
  }
}
