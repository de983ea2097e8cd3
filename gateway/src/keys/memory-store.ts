import { KeyExistsError, type ApiKeyRecord, type KeyPage, type KeyStore, type NewKey } from './types';
import { allSecretHashes, createKey } from './records';

/** The embedded store: one process, nothing shared, gone on exit. For trying sluice out and for tests. */
export class MemoryKeyStore implements KeyStore {
  readonly kind = 'memory';
  private readonly records = new Map<string, ApiKeyRecord>();
  private readonly idBySecretHash = new Map<string, string>();

  async connect(): Promise<void> {} // in this process: always there

  async findBySecretHash(secretHash: string): Promise<ApiKeyRecord | null> {
    const id = this.idBySecretHash.get(secretHash);
    return id === undefined ? null : (this.records.get(id) ?? null);
  }

  create(input: NewKey): Promise<{ record: ApiKeyRecord; key: string }> {
    return createKey(this, input);
  }

  async put(record: ApiKeyRecord): Promise<void> {
    const hashes = allSecretHashes(record);
    if (hashes.some((hash) => (this.idBySecretHash.get(hash) ?? record.id) !== record.id)) throw new KeyExistsError();
    for (const hash of hashes) this.idBySecretHash.set(hash, record.id);
    this.records.set(record.id, structuredClone(record));
  }

  async addSecret(secretHash: string, id: string): Promise<boolean> {
    if (this.idBySecretHash.has(secretHash)) return false;
    this.idBySecretHash.set(secretHash, id);
    return true;
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    return this.records.get(id) ?? null;
  }

  async list({ after, limit }: { after?: string; limit: number }): Promise<KeyPage> {
    const ids = [...this.records.keys()].filter((id) => after === undefined || id > after).sort();
    const records = ids.slice(0, limit).map((id) => this.records.get(id)!);
    return ids.length > limit ? { records, next: ids[limit - 1] } : { records };
  }

  async update(id: string, change: (current: ApiKeyRecord) => ApiKeyRecord): Promise<ApiKeyRecord | null> {
    const current = this.records.get(id);
    if (!current) return null;
    const next = change(structuredClone(current));
    this.records.set(id, next);
    return next;
  }

  // New with every process and nobody else can empty it: it is initialised by definition.
  async writeMarker(): Promise<boolean> {
    return false;
  }
  async hasMarker(): Promise<boolean> {
    return true;
  }
  async close(): Promise<void> {}
}
