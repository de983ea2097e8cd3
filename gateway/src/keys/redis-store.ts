import { timeRedis, type RedisOperation } from '../metrics/registry';
import { StoreUnavailableError } from '../redis/errors';
import { KeyExistsError, type ApiKeyRecord, type KeyPage, type KeyStore, type NewKey } from './types';
import { allSecretHashes, createKey } from './records';
import { closeRedisClient, redisScript, runScript, waitUntilReady, type RedisClient } from '../redis/client';
import { storeFailure, withinDeadline, type RedisDeadline } from '../redis/deadline';
import { REPLACE_RECORD } from './scripts';

/*
 * Schema (Cluster-safe: no command spans two slots):
 *   <prefix>key:{<id>}        hash, the record (the braces make the id its hash tag) and its `rev`
 *   <prefix>secret:<sha256>   string, id of the key that secret opens; SET NX makes creation atomic
 *   <prefix>key-index         sorted set of every key id (all scores 0: ordered by id), for listing
 *   <prefix>marker            written only by `sluice store init` and `sluice keys import` (keys/store-init.ts);
 *                             its absence means the store lost its data or was never initialised
 */

const REPLACE = redisScript(REPLACE_RECORD);

// account and limits came later: records without them read as before.
const TEXT_FIELDS = ['id', 'name', 'tier', 'status', 'account', 'created_at', 'updated_at', 'expires_at', 'rotated_at', 'revoked_at'] as const;
const JSON_FIELDS = ['scopes', 'secret_hashes', 'previous_secrets', 'limits'] as const;

/** Field, value pairs for HSET; absent optional fields are left out. */
function toFields(record: ApiKeyRecord): string[] {
  const fields: string[] = [];
  for (const name of TEXT_FIELDS) if (record[name] !== undefined) fields.push(name, record[name]);
  for (const name of JSON_FIELDS) if (record[name] !== undefined) fields.push(name, JSON.stringify(record[name]));
  return fields;
}

/** A record from its hash (null when there is none). Corrupt JSON throws: a bug or tampering, not an outage. */
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
  for (const name of ['account', 'updated_at', 'expires_at', 'rotated_at', 'revoked_at'] as const) if (hash[name]) record[name] = hash[name];
  if (hash.scopes) record.scopes = JSON.parse(hash.scopes) as string[];
  if (hash.limits) record.limits = JSON.parse(hash.limits) as ApiKeyRecord['limits'];
  if (hash.previous_secrets) record.previous_secrets = JSON.parse(hash.previous_secrets) as ApiKeyRecord['previous_secrets'];
  return record;
}

/** Read-modify-write attempts before giving up; only a storm of writes to one key needs more than one. */
const UPDATE_ATTEMPTS = 10;

export class RedisKeyStore implements KeyStore {
  readonly kind = 'redis';
  constructor(
    readonly client: RedisClient,
    private readonly prefix: string,
    /** Bounds each call (see redis/deadline.ts); undefined: unbounded (the CLI, which waits for Redis anyway). */
    private readonly deadline?: RedisDeadline,
  ) {}

  /** Replaces the record at `recordKey` if its rev is still `expectedRev` ("": whatever is there). */
  private replaceRecord(recordKey: string, expectedRev: string, record: ApiKeyRecord): Promise<number> {
    return runScript<number>(this.client, REPLACE, [recordKey], [expectedRev, ...toFields(record)]);
  }

  private recordKey(id: string) {
    return `${this.prefix}key:{${id}}`;
  }
  private secretKey(secretHash: string) {
    return `${this.prefix}secret:${secretHash}`;
  }
  private get indexKey() {
    return `${this.prefix}key-index`;
  }
  private get markerKey() {
    return `${this.prefix}marker`;
  }

  /**
   * Runs one timed Redis round trip on `key`; any failure of the store becomes StoreUnavailableError
   * (StoreBusyError when Redis answers, but too late).
   */
  private async call<T>(operation: RedisOperation, key: string, run: () => Promise<T>): Promise<T> {
    try {
      return await timeRedis(operation, () => withinDeadline(this.deadline, key, run));
    } catch (err) {
      throw storeFailure(`Redis ${operation}`, err);
    }
  }

  async findBySecretHash(secretHash: string): Promise<ApiKeyRecord | null> {
    const id = await this.call('key_lookup', this.secretKey(secretHash), () => this.client.get(this.secretKey(secretHash)));
    if (id === null) {
      // An unknown secret is only "invalid" if the store still holds its data.
      if (!(await this.hasMarker())) throw new StoreUnavailableError('the key store has lost its data (marker missing)');
      return null;
    }
    return this.get(id);
  }

  create(input: NewKey): Promise<{ record: ApiKeyRecord; key: string }> {
    return createKey(this, input);
  }

  async put(record: ApiKeyRecord): Promise<void> {
    const hashes = allSecretHashes(record);
    const claimed: string[] = [];
    const giveBack = () => Promise.all(claimed.map((hash) => this.client.del(this.secretKey(hash)).catch(() => undefined)));
    try {
      for (const hash of hashes) {
        if ((await this.call('key_write', this.secretKey(hash), () => this.client.set(this.secretKey(hash), record.id, { condition: 'NX' }))) !== null) claimed.push(hash);
        else if ((await this.call('key_write', this.secretKey(hash), () => this.client.get(this.secretKey(hash)))) !== record.id) throw new KeyExistsError();
      }
      await this.call('key_write', this.recordKey(record.id), () => this.replaceRecord(this.recordKey(record.id), '', record));
      await this.call('key_write', this.indexKey, () => this.client.zAdd(this.indexKey, { score: 0, value: record.id }));
    } catch (err) {
      // Give the secrets back so a retry can succeed; a half-written record is unreachable without them.
      await giveBack();
      throw err;
    }
  }

  async addSecret(secretHash: string, id: string): Promise<boolean> {
    return (await this.call('key_write', this.secretKey(secretHash), () => this.client.set(this.secretKey(secretHash), id, { condition: 'NX' }))) !== null;
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    const hash = await this.call('key_read', this.recordKey(id), () => this.client.hGetAll(this.recordKey(id)));
    return fromHash(hash);
  }

  async list({ after, limit }: { after?: string; limit: number }): Promise<KeyPage> {
    const from = after === undefined ? '-' : `(${after}`;
    const ids = await this.call('key_list', this.indexKey, () => this.client.zRangeByLex(this.indexKey, from, '+', { LIMIT: { offset: 0, count: limit + 1 } }));
    const page = ids.slice(0, limit);
    const records = (await Promise.all(page.map((id) => this.get(id)))).filter((r): r is ApiKeyRecord => r !== null);
    return ids.length > limit ? { records, next: page[page.length - 1] } : { records };
  }

  async update(id: string, change: (current: ApiKeyRecord) => ApiKeyRecord): Promise<ApiKeyRecord | null> {
    for (let attempt = 0; attempt < UPDATE_ATTEMPTS; attempt++) {
      const hash = await this.call('key_read', this.recordKey(id), () => this.client.hGetAll(this.recordKey(id)));
      const current = fromHash(hash);
      if (!current) return null;
      const next = change(current);
      const written = await this.call('key_write', this.recordKey(id), () =>
        this.replaceRecord(this.recordKey(id), hash.rev ?? '0', next),
      );
      if (written === 1) return next;
      if (written === 0) return null;
    }
    throw new StoreUnavailableError(`Redis update of ${id} failed: too many concurrent writers`);
  }

  async connect(waitMs: number): Promise<void> {
    await waitUntilReady(this.client, waitMs);
    await this.upgrade();
  }

  /** Stores written before the key API kept ids in a plain set (`key-ids`); moves them to the index once. */
  private async upgrade(): Promise<void> {
    const legacy = `${this.prefix}key-ids`;
    const ids = await this.call('key_write', legacy, () => this.client.sMembers(legacy));
    if (ids.length === 0) return;
    await this.call('key_write', this.indexKey, () => this.client.zAdd(this.indexKey, ids.map((id) => ({ score: 0, value: id }))));
    await this.call('key_write', legacy, () => this.client.del(legacy));
  }

  async writeMarker(): Promise<boolean> {
    const written = await this.call('marker', this.markerKey, () =>
      this.client.set(this.markerKey, JSON.stringify({ created_at: new Date().toISOString() }), { condition: 'NX' }),
    );
    return written !== null;
  }

  async hasMarker(): Promise<boolean> {
    return (await this.call('marker', this.markerKey, () => this.client.exists(this.markerKey))) === 1;
  }

  async close(): Promise<void> {
    await closeRedisClient(this.client);
  }
}
