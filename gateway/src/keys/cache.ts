import { LRUCache } from 'lru-cache';
import { keyCacheLookupsBy } from '../metrics/registry';
import { hashSecret, opensUntil } from './records';
import { StoreBusyError, StoreUnavailableError } from '../redis/errors';
import type { ApiKeyRecord, KeyStore } from './types';

export type Found = { record: ApiKeyRecord | null; cached: boolean };

interface Entry {
  record: ApiKeyRecord;
  /** The epoch it was read in: entries of an older epoch must be checked with the store again. */
  epoch: number;
  /** Until when the secret it is cached under opens the record (records.ts' opensUntil), worked out once. */
  opensUntil: number;
}

/** The entry's record if its secret opens it now (a rotated-out secret stops at the end of its grace). */
function openedBy(entry: Entry): ApiKeyRecord | null {
  // A current secret opens for ever: no clock read on the hit every request makes.
  return entry.opensUntil === Infinity || Date.now() < entry.opensUntil ? entry.record : null;
}

/**
 * A small per-replica cache in front of the key store, so a hot key costs no Redis call.
 * Entries live `ttlMs`; while the store cannot answer, an expired entry is still served
 * (a known customer keeps working through a Redis outage), and an unknown key is a 503, never a 401.
 * A key changed anywhere is dropped at once through `invalidate(id)` (see events.ts).
 */
const STORE_RETRY_MS = 1000;
// Counted on every request: the child is looked up once.
const cacheHits = keyCacheLookupsBy('hit');

export class KeyCache {
  private readonly cache: LRUCache<string, Entry>;
  /** The secret hashes cached for each key id, so all of a key's entries can be dropped together. */
  private readonly hashesById = new Map<string, Set<string>>();
  /** Bumped by every invalidation: a lookup that started before one must not cache what it read. */
  private generation = 0;
  /** Bumped by expireAll(). */
  private epoch = 0;
  /**
   * After the store failed (0: it did not), keys we hold, however old, are served without asking it:
   * for a second, then while one lookup (the probe) checks whether it is back. So during an outage
   * known customers do not each wait out a timeout. Keys we do not hold still ask: nothing else can
   * tell whether they are valid.
   */
  private storeDownUntil = 0;
  private probeInFlight = false;
  /** Store lookups under way, by secret hash: concurrent requests with one uncached key share one. */
  private readonly lookups = new Map<string, Promise<Found>>();

  constructor(
    private readonly store: KeyStore,
    options: { ttlMs: number; maxEntries: number },
  ) {
    this.cache = new LRUCache({
      max: options.maxEntries,
      ttl: options.ttlMs,
      noDeleteOnStaleGet: true,
      dispose: (entry, secretHash) => this.unindex(entry.record.id, secretHash),
    });
  }

  /**
   * The key record a plaintext secret opens (usable or not), or null when the store has none or the
   * secret no longer opens it (rotated out and past its grace period).
   */
  find(secret: string): Found | Promise<Found> {
    const secretHash = hashSecret(secret);
    const fresh = this.cache.get(secretHash);
    if (fresh && fresh.epoch === this.epoch) {
      cacheHits.inc();
      return { record: openedBy(fresh), cached: true };
    }
    return this.findUncached(secretHash);
  }

  /** Not in the cache (or not confirmed since the change feed was lost): the store, or what we have while it is down. */
  private async findUncached(secretHash: string): Promise<Found> {
    const storeSuspect = this.probeInFlight || Date.now() < this.storeDownUntil;
    if (storeSuspect && this.cache.get(secretHash, { allowStale: true })) return this.withoutStore(secretHash);
    let lookup = this.lookups.get(secretHash);
    if (!lookup) {
      lookup = this.lookUp(secretHash).finally(() => this.lookups.delete(secretHash));
      this.lookups.set(secretHash, lookup);
    }
    return lookup;
  }

  /** One store round trip for a secret (shared by every request that waits for it). */
  private async lookUp(secretHash: string): Promise<Found> {
    const isProbe = this.storeDownUntil > 0;
    if (isProbe) this.probeInFlight = true;
    const generation = this.generation;
    try {
      const record = await this.store.findBySecretHash(secretHash);
      this.storeDownUntil = 0;
      keyCacheLookupsBy('miss').inc();
      if (!record) {
        this.cache.delete(secretHash);
        return { record: null, cached: false };
      }
      const entry: Entry = { record, epoch: this.epoch, opensUntil: opensUntil(record, secretHash) };
      if (generation === this.generation) this.remember(secretHash, entry);
      return { record: openedBy(entry), cached: false };
    } catch (err) {
      // Busy is not down: the store answers, just late. Nothing stale is served for it, nothing probed.
      if (!(err instanceof StoreUnavailableError) || err instanceof StoreBusyError) throw err;
      this.storeDownUntil = Date.now() + STORE_RETRY_MS;
      return this.withoutStore(secretHash, err);
    } finally {
      if (isProbe) this.probeInFlight = false;
    }
  }

  /** While the store cannot answer: the entry we have, however old, or the store's failure. */
  private withoutStore(secretHash: string, cause?: StoreUnavailableError): Found {
    const stale = this.cache.get(secretHash, { allowStale: true });
    keyCacheLookupsBy(stale ? 'stale' : 'miss').inc();
    if (!stale) throw cause ?? new StoreUnavailableError('the key store failed moments ago');
    return { record: openedBy(stale), cached: true };
  }

  /** Drops every entry of one key: it was changed (revoked, rotated, new tier) on some replica. */
  invalidate(id: string): void {
    this.generation++;
    for (const secretHash of [...(this.hashesById.get(id) ?? [])]) this.cache.delete(secretHash);
  }

  /**
   * Changes may have been missed (the change feed was disconnected): no entry is used again before the
   * store has confirmed it. Entries stay only as the outage fallback, like entries past their TTL, so
   * Redis coming back empty does not turn every known customer into a 503.
   */
  expireAll(): void {
    this.generation++;
    this.epoch++;
  }

  private remember(secretHash: string, entry: Entry): void {
    this.cache.set(secretHash, entry); // disposes (and unindexes) an entry it replaces first
    const { id } = entry.record;
    let hashes = this.hashesById.get(id);
    if (!hashes) this.hashesById.set(id, (hashes = new Set()));
    hashes.add(secretHash);
  }

  private unindex(id: string, secretHash: string): void {
    const hashes = this.hashesById.get(id);
    if (!hashes) return;
    hashes.delete(secretHash);
    if (hashes.size === 0) this.hashesById.delete(id);
  }
}
