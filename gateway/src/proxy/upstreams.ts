import { isDeepStrictEqual } from 'node:util';
import type { ConnectionOptions } from 'node:tls';
import { Pool } from 'undici';
import type { Upstream } from '../config/schema';
import { serviceUnavailable } from '../errors/envelope';
import type { RequestAbort } from '../pipeline/abort';
import { Breaker } from './breaker';
import { upstreamTlsOptions } from './upstream-tls';

/** `fn`, callable once; later calls do nothing. */
function once(fn: () => void): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    fn();
  };
}

export interface Target {
  readonly upstream: string;
  readonly origin: string;
  readonly pool: Pool;
  readonly breaker: Breaker;
}

interface Entry {
  /** The config it was built from: a reload keeps the entry (pools, breakers) while this is unchanged. */
  settings: Upstream;
  /** Its TLS files' contents when it was built: a renewed certificate or CA also rebuilds the pools. */
  tls: ConnectionOptions | undefined;
  targets: Target[];
  next: number;
  /** Connections one key may hold across the upstream's targets. */
  perKey: number;
  /** Per key id: exchanges in flight, and requests waiting for one of them to end. */
  shares: Map<string, Share>;
}

interface Share {
  held: number;
  waiting: Array<() => void>;
}

/**
 * One keep-alive undici Pool per upstream target, picked round-robin among targets whose breaker
 * lets traffic through; and a per-key share of each upstream, so one key's misbehaving clients (slow
 * readers, slow writers) cannot hold every connection other keys need.
 */
export class Upstreams {
  private readonly byName = new Map<string, Entry>();

  /**
   * `previous`: the running set, on a reload. An upstream whose settings did not change is taken over
   * as it is — its pools, its breakers (an ejected target stays ejected) and the keys' shares.
   * Throws, before any pool is built, when an upstream's TLS files cannot be used.
   */
  constructor(upstreams: Readonly<Record<string, Upstream>>, previous?: Upstreams) {
    const tlsOptions = new Map(Object.entries(upstreams).map(([name, upstream]) => [name, upstreamTlsOptions(upstream.tls)]));
    for (const [name, upstream] of Object.entries(upstreams)) {
      const kept = previous?.byName.get(name);
      const tls = tlsOptions.get(name);
      if (kept && isDeepStrictEqual(kept.settings, upstream) && isDeepStrictEqual(kept.tls, tls)) {
        this.byName.set(name, kept);
        continue;
      }
      const targets = upstream.targets.map((origin) => {
        const pool = new Pool(origin, {
          connections: upstream.connections,
          // The per-request timeouts come from the route; these bound connection set-up (TCP and TLS).
          connectTimeout: Math.min(upstream.timeout_ms, 10_000),
          keepAliveTimeout: 4_000,
          ...(tls && { connect: tls }),
        });
        return { upstream: name, origin, pool, breaker: new Breaker(upstream.breaker.failures, upstream.breaker.cooldown) };
      });
      const perKey = upstream.max_connections_per_key ?? Math.ceil(upstream.connections / 2);
      this.byName.set(name, { settings: upstream, tls, targets, next: 0, perKey, shares: new Map() });
    }
  }

  /**
   * The next target that takes traffic, skipping `exclude` (a target that just failed) when another
   * exists. When every target is ejected: 503 at once, with Retry-After until the first half-opens.
   */
  pick(name: string, exclude?: Target): Target {
    const entry = this.entry(name);
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
    throw serviceUnavailable({ message: 'No healthy upstream target is available. Please try again later.', retryAfterSeconds: retryAfter });
  }

  /**
   * Takes one of `key`'s share of the upstream's connections for an exchange; the returned function
   * gives it back. Past its share a key's request waits for one of the key's own exchanges to end
   * (first come, first served), never for another key's: one key's slow clients cannot take the
   * connections others need, and a burst of one key is served in turn. While the key is within its
   * share (nearly always) the answer is immediate; a wait rejects with the signal's reason if it
   * aborts first (the route's timeout, or the client gone).
   */
  claim(name: string, key: string, signal: RequestAbort): (() => void) | Promise<() => void> {
    const entry = this.entry(name);
    let share = entry.shares.get(key);
    if (!share) entry.shares.set(key, (share = { held: 0, waiting: [] }));
    const release = () => this.release(entry, key, share);
    if (share.held < entry.perKey) {
      share.held++;
      return once(release);
    }
    return new Promise<() => void>((resolve, reject) => {
      const waiter = () => {
        signal.off('abort', onAbort);
        resolve(once(release)); // the slot was handed over: `held` did not change
      };
      const onAbort = () => {
        share.waiting.splice(share.waiting.indexOf(waiter), 1);
        reject(signal.reason);
      };
      if (signal.aborted) return reject(signal.reason);
      share.waiting.push(waiter);
      signal.once('abort', onAbort);
    });
  }

  /** An exchange ended: its slot goes to the key's next waiting request, or is freed. */
  private release(entry: Entry, key: string, share: Share): void {
    const next = share.waiting.shift();
    if (next) return next();
    share.held--;
    if (share.held === 0) entry.shares.delete(key);
  }

  private entry(name: string): Entry {
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`no upstream named ${name}`); // config validation makes this a bug
    return entry;
  }

  /** Each target's breaker state, for the breaker gauge. */
  readings(): Array<{ upstream: string; target: string; state: Breaker['state'] }> {
    return this.targets().map((t) => ({ upstream: t.upstream, target: t.origin, state: t.breaker.state }));
  }

  /** Every target, for health metrics. */
  targets(): Target[] {
    return [...this.byName.values()].flatMap((entry) => entry.targets);
  }

  /** After a reload: closes the pools `next` did not take over (see close()). */
  retire(next: Upstreams, waitMs: number): Promise<void> {
    const keptPools = new Set(next.targets().map((t) => t.pool));
    return this.close(waitMs, (target) => !keptPools.has(target.pool));
  }

  /** Closes every pool, letting queued requests finish for up to `waitMs`, then destroys what is left. */
  async close(waitMs = 1000, which: (target: Target) => boolean = () => true): Promise<void> {
    await Promise.all(
      this.targets().filter(which).map(async ({ pool }) => {
        const timer = setTimeout(() => void pool.destroy().catch(() => undefined), waitMs);
        await pool.close().catch(() => pool.destroy());
        clearTimeout(timer);
      }),
    );
  }
}
