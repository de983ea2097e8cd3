// What the gateway needs from a key store; the Redis and the embedded memory store implement it.

export type KeyStatus = 'active' | 'revoked';

/** A stored API key. Only hashes of secrets are kept; the plaintext is shown once at creation. */
export interface ApiKeyRecord {
  id: string;
  name: string;
  tier: string;
  /** The key's own scopes, a subset of its tier's; absent = the tier's scopes. */
  scopes?: string[];
  status: KeyStatus;
  created_at: string;
  expires_at?: string;
  /** SHA-256 (hex) of every secret that opens this key. */
  secret_hashes: string[];
}

/** The record as shown to operators: never the hashes. */
export type PublicKey = Omit<ApiKeyRecord, 'secret_hashes'>;

export interface NewKey {
  name: string;
  tier: string;
  scopes?: string[];
  expires_at?: string;
  /** An existing plaintext key to import; absent = generate one. */
  key?: string;
}

export interface KeyStore {
  readonly kind: 'memory' | 'redis';
  /** The key a secret opens, or null when no key matches. Throws StoreUnavailableError when it cannot tell. */
  findBySecretHash(secretHash: string): Promise<ApiKeyRecord | null>;
  /** Creates a key; throws KeyExistsError when the secret is already taken. Returns the plaintext once. */
  create(input: NewKey): Promise<{ record: ApiKeyRecord; key: string }>;
  get(id: string): Promise<ApiKeyRecord | null>;
  list(): Promise<ApiKeyRecord[]>;
  /** Marks the key revoked (kept for audit). False when no such key. */
  revoke(id: string): Promise<boolean>;
  /** Writes the "this store is initialised" marker if absent (first start). */
  ensureMarker(): Promise<void>;
  /** Whether the marker is there: false means the store lost its data (restart without data, wrong db). */
  hasMarker(): Promise<boolean>;
  close(): Promise<void>;
}

/** The store could not answer (unreachable, timed out, or lost its data): never a reason for a 401. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

export class KeyExistsError extends Error {
  constructor() {
    super('an API key with this value already exists');
    this.name = 'KeyExistsError';
  }
}
