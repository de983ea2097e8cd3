import { Pool } from 'undici';
import type { Upstream } from '../config/schema';

export interface Target {
  readonly origin: string;
  readonly pool: Pool;
}

/** One keep-alive undici Pool per upstream target, picked round-robin. */
export class Upstreams {
  private readonly byName = new Map<string, { targets: Target[]; next: number }>();

  constructor(upstreams: Readonly<Record<string, Upstream>>) {
    for (const [name, upstream] of Object.entries(upstreams)) {
      const targets = upstream.targets.map((origin) => ({
        origin,
        pool: new Pool(origin, {
          connections: upstream.connections,
          // The per-request timeouts come from the route; these bound connection set-up.
          connectTimeout: Math.min(upstream.timeout_ms, 10_000),
          keepAliveTimeout: 4_000,
        }),
      }));
      this.byName.set(name, { targets, next: 0 });
    }
  }

  pick(name: string): Target {
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`no upstream named ${name}`); // config validation makes this a bug
    const target = entry.targets[entry.next];
    entry.next = (entry.next + 1) % entry.targets.length;
    return target;
  }

  /** Closes every pool, letting queued requests finish for up to `waitMs`, then destroys what is left. */
  async close(waitMs = 1000): Promise<void> {
    const pools = [...this.byName.values()].flatMap((entry) => entry.targets.map((t) => t.pool));
    await Promise.all(
      pools.map(async (pool) => {
        const timer = setTimeout(() => void pool.destroy().catch(() => undefined), waitMs);
        await pool.close().catch(() => pool.destroy());
        clearTimeout(timer);
      }),
    );
  }
}
