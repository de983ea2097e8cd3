import { Pool } from 'undici';
import type { Upstream } from '../config/schema';
import { GatewayError } from '../errors/envelope';
import { Breaker } from './breaker';

export interface Target {
  readonly upstream: string;
  readonly origin: string;
  readonly pool: Pool;
  readonly breaker: Breaker;
}

/** One keep-alive undici Pool per upstream target, picked round-robin among targets whose breaker lets traffic through. */
export class Upstreams {
  private readonly byName = new Map<string, { targets: Target[]; next: number }>();

  constructor(upstreams: Readonly<Record<string, Upstream>>) {
    for (const [name, upstream] of Object.entries(upstreams)) {
      const targets = upstream.targets.map((origin) => ({
        upstream: name,
        origin,
        pool: new Pool(origin, {
          connections: upstream.connections,
          // The per-request timeouts come from the route; these bound connection set-up.
          connectTimeout: Math.min(upstream.timeout_ms, 10_000),
          keepAliveTimeout: 4_000,
        }),
        breaker: new Breaker(upstream.breaker.failures, upstream.breaker.cooldown),
      }));
      this.byName.set(name, { targets, next: 0 });
    }
  }

  /**
   * The next target that takes traffic, skipping `exclude` (a target that just failed) when another
   * exists. When every target is ejected: 503 at once, with Retry-After until the first half-opens.
   */
  pick(name: string, exclude?: Target): Target {
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`no upstream named ${name}`); // config validation makes this a bug
    const count = entry.targets.length;
    for (let i = 0; i < count; i++) {
      const target = entry.targets[(entry.next + i) % count];
      if (target === exclude && count > 1) continue;
      if (target.breaker.tryAcquire()) {
        entry.next = (entry.next + i + 1) % count;
        return target;
      }
    }
    const soonest = Math.min(...entry.targets.map((t) => t.breaker.reopensAt || Date.now()));
    const retryAfter = Math.max(1, Math.ceil((soonest - Date.now()) / 1000));
    throw new GatewayError('service_unavailable', {
      message: 'No healthy upstream target is available. Please try again later.',
      headers: { 'retry-after': String(retryAfter) },
    });
  }

  /** Every target, for health metrics. */
  targets(): Target[] {
    return [...this.byName.values()].flatMap((entry) => entry.targets);
  }

  /** Closes every pool, letting queued requests finish for up to `waitMs`, then destroys what is left. */
  async close(waitMs = 1000): Promise<void> {
    await Promise.all(
      this.targets().map(async ({ pool }) => {
        const timer = setTimeout(() => void pool.destroy().catch(() => undefined), waitMs);
        await pool.close().catch(() => pool.destroy());
        clearTimeout(timer);
      }),
    );
  }
}
