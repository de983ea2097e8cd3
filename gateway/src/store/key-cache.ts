import { LRUCache } from 'lru-cache';
import { hashSecret } from './keys';
import { StoreUnavailableError, type ApiKeyRecord, type KeyStore } from './types';

/**
 * A small per-replica cache in front of the key store, so a hot key costs no Redis call.
 * Entries live `ttlMs`; while the store cannot answer, an expired entry is still served
 * (a known customer keeps working through a Redis outage), and an unknown key is a 503, never a 401.
 */
export class KeyCache {
  private readonly cache: LRUCache<string, ApiKeyRecord>;

  constructor(
    private readonly store: KeyStore,
    options: { ttlMs: number; maxEntries: number },
  ) {
    this.cache = new LRUCache({ max: options.maxEntries, ttl: options.ttlMs, noDeleteOnStaleGet: true });
  }

  /** The key record a plaintext secret opens (usable or not), or null when the store has none. */
  async find(secret: string): Promise<{ record: ApiKeyRecord | null; cached: boolean }> {
    const secretHash = hashSecret(secret);
    const fresh = this.cache.get(secretHash);
    if (fresh) return { record: fresh, cached: true };
    try {
      const record = await this.store.findBySecretHash(secretHash);
      if (record) this.cache.set(secretHash, record);
      else this.cache.delete(secretHash);
      return { record, cached: false };
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      const stale = this.cache.get(secretHash, { allowStale: true });
      if (stale) return { record: stale, cached: true };
      throw err;
    }
  }

  clear(): void {
    this.cache.clear();
  }
}
