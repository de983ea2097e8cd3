import type { Logger } from 'pino';
import { formatWindow } from '../config/duration';
import { catalogue } from '../errors/catalogue';
import type { Config } from '../config/schema';
import { accountWindows, overrideWindows, tierConcurrency, tierQuota, tierWindows } from '../ratelimit/plan';
import { calendarWindowName } from '../ratelimit/calendar';
import type { KeyEvents } from '../keys/events';
import { checkKeyAgainstTiers, generateSecret, hashSecret, KEY_ID_PATTERN, newRecord, rotatedRecord, toPublicKey } from '../keys/records';
import type { Limiter, WindowState } from '../ratelimit/limiter';
import { KeyExistsError, type ApiKeyRecord, type KeyStore, type PublicKey } from '../keys/types';
import type { CreateKeyInput, UpdateKeyInput } from './validation';
import { assertInitialised } from '../keys/store-init';

// The key lifecycle, one implementation for the admin API and the CLI: check, store, announce the
// change to every replica. It takes typed inputs (each edge parses its own: HTTP bodies in
// keys-api.ts, command-line options in cli.ts) and throws KeyServiceError for what the caller asked
// wrongly; StoreUnavailableError and LimiterUnavailableError pass through (the store cannot answer).
// Changes (create, update, rotate, revoke) are refused with StoreNotInitialisedError while the store
// holds no marker: they would otherwise make an emptied store look like it held its data.

/** What is wrong with a request to the key service: the edges turn it into a 404/409/422 or a message. */
export class KeyServiceError extends Error {
  constructor(
    readonly problem: 'not_found' | 'exists' | 'unknown_tier' | 'invalid',
    message: string,
    /** The input field at fault, for unknown_tier and invalid. */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'KeyServiceError';
  }
}

export interface ListQuery {
  /** A next_cursor of a previous page. */
  cursor?: string;
  limit: number;
}

/** A key as shown right after it was made or rotated: the only time its plaintext is shown. */
export type KeyWithSecret = { id: string; key: string } & Omit<PublicKey, 'id'>;

export interface KeyList {
  keys: PublicKey[];
  /** Pass as `cursor` for the next page; null on the last page. */
  next_cursor: string | null;
}

export interface WindowUsage {
  window: string;
  window_seconds: number;
  limit: number;
  used: number;
  remaining: number;
  /** Unix seconds: when this window next has more room (for a quota: the next period boundary). */
  reset: number;
  /** shadow: counted, never refused. */
  mode: 'enforce' | 'shadow';
}

export interface KeyUsage {
  id: string;
  tier: string;
  account?: string;
  /** The key's own windows: its `limits`, or its tier's. */
  windows: WindowUsage[];
  /** The tier's account_limits, counted for every key of the account (none without an account). */
  account_windows: WindowUsage[];
  /** The tier's calendar quota for this key in the current period, or null. */
  quota: WindowUsage | null;
  /** Only for a tier with a concurrency limit: this key's requests in flight across all replicas. */
  concurrency?: { limit: number; in_flight: number; mode: 'enforce' | 'shadow' };
}

function windowUsage(w: WindowState): WindowUsage {
  return {
    window: w.calendar ? calendarWindowName(w.calendar) : formatWindow(w.windowMs),
    window_seconds: w.windowMs / 1000,
    limit: w.limit,
    used: w.used,
    remaining: Math.max(0, w.limit - w.used),
    reset: Math.ceil(w.resetMs / 1000),
    mode: w.shadow ? 'shadow' : 'enforce',
  };
}

export interface KeyServiceDeps {
  store: KeyStore;
  events: Pick<KeyEvents, 'announce'>;
  /** The running config (tiers and the rotation grace may change on reload). */
  config: () => Config;
  /** For usage reports; the CLI has none. */
  limiter?: Limiter;
  log?: Logger;
}

function notFound(id: string): KeyServiceError {
  // Only a well-formed id is repeated back: whatever else was in the path might be a secret pasted by mistake.
  return new KeyServiceError('not_found', KEY_ID_PATTERN.test(id) ? `API key with ID '${id}' does not exist` : catalogue.key_not_found.message);
}

function validationFailed(field: string, message: string): KeyServiceError {
  return new KeyServiceError('invalid', message, field);
}

function withSecret(record: ApiKeyRecord, key: string): KeyWithSecret {
  const { id, ...rest } = toPublicKey(record);
  return { id, key, ...rest };
}

function assertActive(record: ApiKeyRecord): void {
  if (record.status !== 'active') throw validationFailed('status', `API key '${record.id}' is revoked; a revoked key cannot be changed.`);
}

function assertFuture(expiresAt: string | undefined | null): void {
  if (expiresAt && !(Date.parse(expiresAt) > Date.now())) throw validationFailed('expires_at', 'expires_at must be in the future.');
}

const normaliseTime = (iso: string) => new Date(iso).toISOString();

export class KeyService {
  constructor(private readonly deps: KeyServiceDeps) {}

  private fitTiers(record: Pick<ApiKeyRecord, 'tier' | 'scopes'>): void {
    const problem = checkKeyAgainstTiers(this.deps.config().tiers, record);
    if (problem) throw new KeyServiceError(problem.code === 'unknown_tier' ? 'unknown_tier' : 'invalid', problem.message, problem.field);
  }

  private audit(action: string, id: string): void {
    this.deps.log?.info({ action, key_id: id }, `admin: key ${action}`);
  }

  /**
   * Every key of one account shares its account windows, which come from the tier: so they must all
   * be in one tier. Revoked keys do not count. This reads every key (admin calls only, never a
   * request); two concurrent creates in different tiers may still both pass.
   */
  private async assertAccountTier(account: string, tier: string, exceptId?: string): Promise<void> {
    for await (const other of this.exportRecords()) {
      if (other.account === account && other.tier !== tier && other.status === 'active' && other.id !== exceptId) {
        throw validationFailed('tier', `Every key of account "${account}" must be in one tier: ${other.id} is in tier "${other.tier}".`);
      }
    }
  }

  /** Creates a key (or imports one given as `key`), with its plaintext, shown this once. */
  async create(input: CreateKeyInput): Promise<KeyWithSecret> {
    this.fitTiers(input);
    assertFuture(input.expires_at);
    await assertInitialised(this.deps.store);
    if (input.account !== undefined) await this.assertAccountTier(input.account, input.tier);
    const created = newRecord({ ...input, expires_at: input.expires_at && normaliseTime(input.expires_at) });
    try {
      await this.deps.store.put(created.record);
    } catch (err) {
      if (err instanceof KeyExistsError) throw new KeyServiceError('exists', catalogue.key_exists.message);
      throw err;
    }
    this.audit('created', created.record.id);
    return withSecret(created.record, created.key);
  }

  async list({ cursor, limit }: ListQuery): Promise<KeyList> {
    const page = await this.deps.store.list({ after: cursor, limit });
    return { keys: page.records.map(toPublicKey), next_cursor: page.next ?? null };
  }

  async get(id: string): Promise<PublicKey> {
    return toPublicKey(await this.record(id));
  }

  private async record(id: string): Promise<ApiKeyRecord> {
    const record = KEY_ID_PATTERN.test(id) ? await this.deps.store.get(id) : null;
    if (!record) throw notFound(id);
    return record;
  }

  /** Changes name, tier, scopes or expiry; every replica applies it within a second. */
  async update(id: string, patch: UpdateKeyInput): Promise<PublicKey> {
    assertFuture(patch.expires_at);
    await assertInitialised(this.deps.store);
    const before = await this.record(id); // 404 before anything else
    if (patch.account !== undefined) throw validationFailed('account', 'The account of a key is set when it is created and cannot be changed.');
    if (patch.tier !== undefined && before.account !== undefined) await this.assertAccountTier(before.account, patch.tier, id);
    const updated = await this.deps.store.update(id, (current) => {
      assertActive(current);
      const next: ApiKeyRecord = { ...current, updated_at: new Date().toISOString() };
      if (patch.name !== undefined) next.name = patch.name;
      if (patch.tier !== undefined) next.tier = patch.tier;
      if (patch.scopes === null) delete next.scopes;
      else if (patch.scopes !== undefined) next.scopes = patch.scopes;
      if (patch.limits === null) delete next.limits;
      else if (patch.limits !== undefined) next.limits = patch.limits;
      if (patch.expires_at === null) delete next.expires_at;
      else if (patch.expires_at !== undefined) next.expires_at = normaliseTime(patch.expires_at);
      this.fitTiers(next); // a new tier must still grant the key's own scopes
      return next;
    });
    if (!updated) throw notFound(id);
    await this.deps.events.announce(id);
    this.audit('updated', id);
    return toPublicKey(updated);
  }

  /** A new secret (shown once); the old one keeps working for admin.rotation_grace. Quotas stay: they count by id. */
  async rotate(id: string): Promise<KeyWithSecret> {
    await assertInitialised(this.deps.store);
    assertActive(await this.record(id));
    const key = generateSecret();
    const secretHash = hashSecret(key);
    if (!(await this.deps.store.addSecret(secretHash, id))) throw new Error('a freshly generated secret is taken');
    const graceMs = this.deps.config().admin.rotation_grace;
    const updated = await this.deps.store.update(id, (current) => {
      assertActive(current);
      return rotatedRecord(current, secretHash, graceMs);
    });
    if (!updated) throw notFound(id);
    await this.deps.events.announce(id);
    this.audit('rotated', id);
    return withSecret(updated, key);
  }

  /** Revokes a key, kept for audit; revoking it again changes nothing. */
  async revoke(id: string): Promise<PublicKey> {
    await assertInitialised(this.deps.store);
    await this.record(id);
    const updated = await this.deps.store.update(id, (current) => {
      if (current.status === 'revoked') return current;
      const now = new Date().toISOString();
      return { ...current, status: 'revoked', revoked_at: now, updated_at: now };
    });
    if (!updated) throw notFound(id);
    await this.deps.events.announce(id); // also when already revoked: a retry after a failed announce
    this.audit('revoked', id);
    return toPublicKey(updated);
  }

  /**
   * The key's windows (its own limits or its tier's), its account's windows and its quota period,
   * read from the same counters the request path counts in (cost 0: nothing is counted).
   */
  async usage(id: string): Promise<KeyUsage> {
    const record = await this.record(id);
    const tiers = this.deps.config().tiers;
    if (!Object.hasOwn(tiers, record.tier)) {
      throw new KeyServiceError('unknown_tier', `The tier "${record.tier}" of this key is no longer configured.`, 'tier');
    }
    const tier = tiers[record.tier];
    const own = record.limits ? overrideWindows(record.limits, tier) : tierWindows(tier);
    const shared = record.account === undefined ? [] : accountWindows(tier);
    const quota = tierQuota(tier);
    const concurrency = tierConcurrency(tier, this.deps.config().rate_limiting.concurrency_lease);
    const usage: KeyUsage = { id, tier: record.tier, windows: [], account_windows: [], quota: null };
    if (record.account !== undefined) usage.account = record.account;
    if (concurrency) usage.concurrency = { limit: concurrency.limit, in_flight: 0, mode: concurrency.shadow ? 'shadow' : 'enforce' };
    if ((own.length === 0 && shared.length === 0 && !quota && !concurrency) || !this.deps.limiter) return usage;
    const windows = [...own, ...shared];
    const decision = await this.deps.limiter.check({ subject: id, account: record.account, windows, quota, concurrency, cost: 0 });
    if (usage.concurrency && decision.concurrency) usage.concurrency.in_flight = decision.concurrency.inFlight;
    const states = decision.windows.map(windowUsage);
    usage.windows = states.slice(0, own.length);
    usage.account_windows = states.slice(own.length, own.length + shared.length);
    if (quota) usage.quota = states[own.length + shared.length];
    return usage;
  }

  /** Every record with its hashes, for a backup (never leaves through the HTTP API). */
  async *exportRecords(): AsyncGenerator<ApiKeyRecord> {
    let after: string | undefined;
    do {
      const page = await this.deps.store.list({ after, limit: 500 });
      yield* page.records;
      after = page.next;
    } while (after !== undefined);
  }

  /** Restores a record from a backup (replacing one with its id) and tells every replica. */
  async importRecord(record: ApiKeyRecord): Promise<void> {
    try {
      await this.deps.store.put(record);
    } catch (err) {
      if (err instanceof KeyExistsError) throw new KeyServiceError('exists', `A secret of ${record.id} opens another key already.`);
      throw err;
    }
    await this.deps.events.announce(record.id);
  }

  /**
   * After a restore: the store holds its data again (a backup of no keys restores the marker too).
   * With `sluice store init`, the only writer of a missing marker (keys/store-init.ts).
   */
  async restoreMarker(): Promise<void> {
    await this.deps.store.writeMarker();
  }
}
