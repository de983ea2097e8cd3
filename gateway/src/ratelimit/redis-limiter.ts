import type { LimitDecision, Limiter, LimitRequest, WindowState } from './limiter';
import { timeRedis } from '../metrics/registry';
import type { RedisClient } from '../redis/client';
import { storeFailure, type RedisDeadline } from '../redis/deadline';
import { SLIDING_WINDOW } from './scripts';

type ScriptedClient = RedisClient & {
  sluiceSlidingWindow(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Promise<number[]>;
};

/** The sliding-window limiter in Redis: one EVALSHA per request, whatever the number of windows. */
export class RedisLimiter implements Limiter {
  private readonly client: ScriptedClient;

  constructor(
    client: RedisClient,
    private readonly prefix: string,
    /** Bounds each call (see redis/deadline.ts); undefined: ioredis' commandTimeout alone. */
    private readonly deadline?: RedisDeadline,
  ) {
    client.defineCommand('sluiceSlidingWindow', { lua: SLIDING_WINDOW }); // see VARIABLE_KEY_COMMANDS
    this.client = client as ScriptedClient;
  }

  /** `nowMs` replaces Redis TIME: only for tests that replay exact timings. */
  async check(request: LimitRequest, nowMs?: number): Promise<LimitDecision> {
    // The braces make the key id the hash tag: every counter of one API key lives in one slot.
    const keys = request.windows.map((w) => `${this.prefix}rl:{${request.subject}}:${w.name}`);
    const args: (string | number)[] = [request.cost, nowMs ?? ''];
    for (const w of request.windows) args.push(w.limit, w.windowMs);
    let reply: number[];
    try {
      const call = () => this.client.sluiceSlidingWindow(keys.length, ...keys, ...args);
      reply = await timeRedis('ratelimit', () => (this.deadline ? this.deadline.run(keys[0], call) : call()));
    } catch (err) {
      throw storeFailure('Redis rate limit', err);
    }
    const windows: WindowState[] = request.windows.map((w, i) => ({
      limit: w.limit,
      windowMs: w.windowMs,
      used: Number(reply[2 + i * 3]),
      blocking: Number(reply[3 + i * 3]) === 1,
      resetMs: Number(reply[4 + i * 3]),
    }));
    return { allowed: Number(reply[0]) === 1, nowMs: Number(reply[1]), windows };
  }

  // The client belongs to whoever created it (it is shared with the key store).
  async close(): Promise<void> {}
}
