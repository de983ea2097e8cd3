import { randomBytes } from 'node:crypto';
import { redisScript, runScript, type RedisClient } from '../redis/client';
import { withinDeadline, type RedisDeadline } from '../redis/deadline';
import { SLOT_RENEW } from './scripts';

const SCRIPT = redisScript(SLOT_RENEW);

interface Lease {
  readonly key: string;
  readonly leaseMs: number;
}

/**
 * This replica's concurrency slots in Redis (leases in a sorted set per key, taken by the limit
 * script). One timer renews every live lease each third of the shortest lease, sent together (one
 * write per Redis node), so an answer streaming for hours keeps its slot while only a dead
 * replica's slots expire. Giving a slot back is one ZREM, which the caller can wait for (under the
 * store's deadline) so the client's next request finds the slot free. Both are best effort: a
 * failed call leaves a lease that expires on its own within its lease time.
 */
export class SlotLeases {
  private readonly leases = new Map<string, Lease>();
  /** Unique per process, so tokens never collide across replicas or restarts. */
  private readonly tokenPrefix = randomBytes(6).toString('hex');
  private sequence = 0;
  private timer?: NodeJS.Timeout;
  private renewEveryMs = Infinity;

  constructor(
    private readonly client: RedisClient,
    /** Bounds each give-back (see redis/deadline.ts); undefined: unbounded. */
    private readonly deadline?: RedisDeadline,
  ) {}

  /** A new request's token: the member of its lease. */
  nextToken(): string {
    return `${this.tokenPrefix}:${++this.sequence}`;
  }

  /**
   * Keeps the lease alive until the returned function gives it back (once; later calls do nothing).
   * Its promise settles when Redis has removed the lease, or failed to; it never rejects.
   */
  hold(key: string, token: string, leaseMs: number): () => Promise<void> {
    this.leases.set(token, { key, leaseMs });
    this.schedule(leaseMs);
    return async () => {
      if (!this.leases.delete(token)) return;
      if (this.leases.size === 0) this.stop();
      const call = () => this.client.zRem(key, token);
      await withinDeadline(this.deadline, key, call).catch(() => undefined); // else the lease expires by itself
    };
  }

  /** Leases this replica holds (for tests). */
  get size(): number {
    return this.leases.size;
  }

  private schedule(leaseMs: number): void {
    const every = Math.max(100, Math.floor(leaseMs / 3));
    if (this.timer && every >= this.renewEveryMs) return;
    this.stop();
    this.renewEveryMs = every;
    this.timer = setInterval(() => this.renew(), every);
    this.timer.unref();
  }

  private renew(): void {
    for (const [token, { key, leaseMs }] of this.leases) {
      runScript(this.client, SCRIPT, [key], [`${leaseMs}`, token]).catch(() => undefined); // retried next tick
    }
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.renewEveryMs = Infinity;
  }

  close(): void {
    this.stop();
    this.leases.clear();
  }
}
