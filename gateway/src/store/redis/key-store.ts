import { KeyExistsError, StoreUnavailableError, type ApiKeyRecord, type KeyStore, type NewKey } from '../types';
import { newRecord } from '../keys';
import type { RedisClient } from './client';
import { SET_FIELD_IF_EXISTS } from './scripts';

/*
 * Schema (Cluster-safe: no command spans two slots):
 *   <prefix>key:{<id>}        hash, the record (the braces make the id its hash tag)
 *   <prefix>secret:<sha256>   string, id of the key that secret opens; SET NX makes creation atomic
 *   <prefix>key-ids           set of every key id, for listing
 *   <prefix>marker            written on first start; its absence means the store lost its data
 */

type ScriptedClient = RedisClient & {
  sluiceSetFieldIfExists(recordKey: string, field: string, value: string): Promise<number>;
};

function toHash(record: ApiKeyRecord): Record<string, string> {
  const hash: Record<string, string> = {
    id: record.id,
    name: record.name,
    tier: record.tier,
    status: record.status,
    created_at: record.created_at,
    secret_hashes: JSON.stringify(record.secret_hashes),
  };
  if (record.scopes) hash.scopes = JSON.stringify(record.scopes);
  if (record.expires_at) hash.expires_at = record.expires_at;
  return hash;
}

function fromHash(hash: Record<string, string>): ApiKeyRecord | null {
  if (!hash.id) return null;
  const record: ApiKeyRecord = {
    id: hash.id,
    name: hash.name,
    tier: hash.tier,
    status: hash.status === 'active' ? 'active' : 'revoked',
    created_at: hash.created_at,
    secret_hashes: JSON.parse(hash.secret_hashes) as string[],
  };
  if (hash.scopes) record.scopes = JSON.parse(hash.scopes) as string[];
  if (hash.expires_at) record.expires_at = hash.expires_at;
  return record;
}

export class RedisKeyStore implements KeyStore {
  readonly kind = 'redis';
  readonly client: ScriptedClient;

  constructor(
    client: RedisClient,
    private readonly prefix: string,
  ) {
    client.defineCommand('sluiceSetFieldIfExists', { numberOfKeys: 1, lua: SET_FIELD_IF_EXISTS });
    this.client = client as ScriptedClient;
  }

  private recordKey(id: string) {
    return `${this.prefix}key:{${id}}`;
  }
  private secretKey(secretHash: string) {
    return `${this.prefix}secret:${secretHash}`;
  }
  private get idsKey() {
    return `${this.prefix}key-ids`;
  }
  private get markerKey() {
    return `${this.prefix}marker`;
  }

  /** Runs a Redis call; any failure of the store becomes StoreUnavailableError. */
  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw new StoreUnavailableError(`Redis ${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async findBySecretHash(secretHash: string): Promise<ApiKeyRecord | null> {
    const id = await this.call('lookup', () => this.client.get(this.secretKey(secretHash)));
    if (id === null) {
      // An unknown secret is only "invalid" if the store still holds its data.
      if (!(await this.hasMarker())) throw new StoreUnavailableError('the key store has lost its data (marker missing)');
      return null;
    }
    return this.get(id);
  }

  async create(input: NewKey): Promise<{ record: ApiKeyRecord; key: string }> {
    const created = newRecord(input);
    const { record } = created;
    const claimed = await this.call('create', () =>
      this.client.set(this.secretKey(record.secret_hashes[0]), record.id, 'NX'),
    );
    if (claimed === null) throw new KeyExistsError();
    try {
      await this.call('create', () => this.client.hset(this.recordKey(record.id), toHash(record)));
      await this.call('create', () => this.client.sadd(this.idsKey, record.id));
      await this.ensureMarker();
    } catch (err) {
      // Give the secret back so a retry can succeed; the record is then unreachable anyway.
      await this.client.del(this.secretKey(record.secret_hashes[0])).catch(() => undefined);
      throw err;
    }
    return created;
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    const hash = await this.call('read', () => this.client.hgetall(this.recordKey(id)));
    return fromHash(hash);
  }

  async list(): Promise<ApiKeyRecord[]> {
    const ids = await this.call('list', () => this.client.smembers(this.idsKey));
    const records = await Promise.all(ids.sort().map((id) => this.get(id)));
    return records.filter((r): r is ApiKeyRecord => r !== null);
  }

  async revoke(id: string): Promise<boolean> {
    const changed = await this.call('revoke', () =>
      this.client.sluiceSetFieldIfExists(this.recordKey(id), 'status', 'revoked'),
    );
    return changed === 1;
  }

  async ensureMarker(): Promise<void> {
    await this.call('marker write', () =>
      this.client.set(this.markerKey, JSON.stringify({ created_at: new Date().toISOString() }), 'NX'),
    );
  }

  async hasMarker(): Promise<boolean> {
    return (await this.call('marker read', () => this.client.exists(this.markerKey))) === 1;
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
