// What the gateway needs from a key store; the Redis and the embedded memory store implement it.

export type KeyStatus = 'active' | 'revoked';

/** A secret replaced by a rotation: it keeps opening its key until `until` (ISO time). */
export interface RetiredSecret {
  hash: string;
  until: string;
}

/** One window of a key's own limits: `per` as written (a duration like 1m), as the config writes it. */
export interface KeyLimit {
  requests: number;
  per: string;
}

/** A stored API key. Only hashes of secrets are kept; the plaintext is shown once at creation. */
export interface ApiKeyRecord {
  id: string;
  name: string;
  tier: string;
  /** The key's own scopes, a subset of its tier's; absent = the tier's scopes. */
  scopes?: string[];
  status: KeyStatus;
  /** The customer this key belongs to: its keys share the tier's account_limits. Set at creation only. */
  account?: string;
  /** Replaces the tier's `limits` for this key (route windows, account windows and quota still apply). */
  limits?: KeyLimit[];
  created_at: string;
  updated_at?: string;
  expires_at?: string;
  rotated_at?: string;
  revoked_at?: string;
  /** SHA-256 (hex) of the current secret(s). */
  secret_hashes: string[];
  /** Secrets replaced by a rotation, still accepted during the rotation grace period. */
  previous_secrets?: RetiredSecret[];
}

/** The record as shown to operators: never a hash. */
export type PublicKey = Omit<ApiKeyRecord, 'secret_hashes' | 'previous_secrets'>;

export interface NewKey {
  name: string;
  tier: string;
  scopes?: string[];
  expires_at?: string;
  account?: string;
  limits?: KeyLimit[];
  /** An existing plaintext key to import; absent = generate one. */
  key?: string;
}

/** One page of keys in id order; `next` is the id to continue after, absent on the last page. */
export interface KeyPage {
  records: ApiKeyRecord[];
  next?: string;
}

export interface KeyStore {
  readonly kind: 'memory' | 'redis';
  /** Resolves once the store can answer (within `waitMs`, else rejects), its schema up to date. */
  connect(waitMs: number): Promise<void>;
  /** The key a secret opens, or null when no key matches. Throws StoreUnavailableError (redis/errors.ts) when it cannot tell. */
  findBySecretHash(secretHash: string): Promise<ApiKeyRecord | null>;
  /** Creates a key from a create request (seed keys, the demo). Returns the plaintext once. */
  create(input: NewKey): Promise<{ record: ApiKeyRecord; key: string }>;
  /**
   * Stores a record, replacing one with the same id (a restore). Every secret hash must be free or
   * already point at this id: else KeyExistsError, and nothing is written.
   */
  put(record: ApiKeyRecord): Promise<void>;
  /** Points one more secret at a key (a rotation); false when that secret is taken. */
  addSecret(secretHash: string, id: string): Promise<boolean>;
  get(id: string): Promise<ApiKeyRecord | null>;
  /** Up to `limit` records with ids after `after`, in id order: a cursor that stays valid while keys come and go. */
  list(options: { after?: string; limit: number }): Promise<KeyPage>;
  /**
   * Replaces a record with `change(current)`, atomically: if another writer got there first, the change
   * is applied again to the newer record. Null when there is no such key. Errors thrown by `change` pass through.
   */
  update(id: string, change: (current: ApiKeyRecord) => ApiKeyRecord): Promise<ApiKeyRecord | null>;
  /**
   * Writes the "this store is initialised" marker if absent; true when this call wrote it. Only
   * `sluice store init` and `sluice keys import` may call it (keys/store-init.ts): a store that lost
   * its data must stay marked as such until someone restores or re-declares it on purpose.
   */
  writeMarker(): Promise<boolean>;
  /** Whether the marker is there: false means the store lost its data (restart without data, wrong db). */
  hasMarker(): Promise<boolean>;
  close(): Promise<void>;
}

export class KeyExistsError extends Error {
  constructor() {
    super('an API key with this value already exists');
    this.name = 'KeyExistsError';
  }
}
