import { KeyExistsError, type ApiKeyRecord, type KeyStore, type NewKey } from '../types';
import { newRecord } from '../keys';

/** The embedded store: one process, nothing shared, gone on exit. For trying sluice out and for tests. */
export class MemoryKeyStore implements KeyStore {
  readonly kind = 'memory';
  private readonly records = new Map<string, ApiKeyRecord>();
  private readonly idBySecretHash = new Map<string, string>();

  async findBySecretHash(secretHash: string): Promise<ApiKeyRecord | null> {
    const id = this.idBySecretHash.get(secretHash);
    return id === undefined ? null : (this.records.get(id) ?? null);
  }

  async create(input: NewKey): Promise<{ record: ApiKeyRecord; key: string }> {
    const created = newRecord(input);
    const secretHash = created.record.secret_hashes[0];
    if (this.idBySecretHash.has(secretHash)) throw new KeyExistsError();
    this.idBySecretHash.set(secretHash, created.record.id);
    this.records.set(created.record.id, created.record);
    return created;
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    return this.records.get(id) ?? null;
  }

  async list(): Promise<ApiKeyRecord[]> {
    return [...this.records.values()];
  }

  async revoke(id: string): Promise<boolean> {
    const record = this.records.get(id);
    if (!record) return false;
    this.records.set(id, { ...record, status: 'revoked' });
    return true;
  }

  // Memory cannot lose its data behind our back, so it is always initialised.
  async ensureMarker(): Promise<void> {}
  async hasMarker(): Promise<boolean> {
    return true;
  }
  async close(): Promise<void> {}
}
