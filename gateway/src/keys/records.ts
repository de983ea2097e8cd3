import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Tier } from '../config/schema';
import type { ApiKeyRecord, KeyStore, NewKey, PublicKey } from './types';

// Key material shared by every store: how secrets are made, hashed and compared.

export const KEY_PREFIX = 'sk_live_';
/** What generateKeyId() makes (and backups may bring back). */
export const KEY_ID_PATTERN = /^key_[A-Za-z0-9_-]{1,64}$/;

/** 192 random bits, base64url, with a prefix that makes leaked keys easy to spot. */
export function generateSecret(): string {
  return KEY_PREFIX + randomBytes(24).toString('base64url');
}

export function generateKeyId(): string {
  return 'key_' + randomBytes(10).toString('hex');
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Timing-safe: whether the stored hash (hex) is `wanted` (the lookup index alone is not trusted). */
function sameHash(stored: string, wanted: Buffer): boolean {
  const candidate = Buffer.from(stored, 'hex');
  return candidate.length === wanted.length && timingSafeEqual(candidate, wanted);
}

/**
 * Until when (ms since the epoch) this secret opens the record: for ever when it is a current secret,
 * until its grace period ends when it was rotated out, never (-Infinity) otherwise. Every stored hash
 * is compared, so the time taken does not tell which one matched.
 */
export function opensUntil(record: ApiKeyRecord, secretHash: string): number {
  const wanted = Buffer.from(secretHash, 'hex');
  let current = false;
  for (const stored of record.secret_hashes) if (sameHash(stored, wanted)) current = true;
  let until = -Infinity;
  for (const retired of record.previous_secrets ?? []) {
    if (sameHash(retired.hash, wanted)) until = Math.max(until, Date.parse(retired.until));
  }
  return current ? Infinity : until;
}

/** Whether this secret opens the record now: its current secret, or a rotated-out one still in its grace period. */
export function opensWith(record: ApiKeyRecord, secretHash: string, nowMs = Date.now()): boolean {
  return nowMs < opensUntil(record, secretHash);
}

/** A fresh record and its plaintext secret for a create request. */
export function newRecord(input: NewKey, now = new Date()): { record: ApiKeyRecord; key: string } {
  const key = input.key ?? generateSecret();
  const record: ApiKeyRecord = {
    id: generateKeyId(),
    name: input.name,
    tier: input.tier,
    status: 'active',
    created_at: now.toISOString(),
    secret_hashes: [hashSecret(key)],
  };
  if (input.scopes) record.scopes = [...input.scopes];
  if (input.expires_at) record.expires_at = input.expires_at;
  if (input.account) record.account = input.account;
  if (input.limits) record.limits = input.limits.map((l) => ({ ...l }));
  return { record, key };
}

/** Creates a key in `store` from a create request: a fresh record, stored; the plaintext returned once. */
export async function createKey(store: Pick<KeyStore, 'put'>, input: NewKey): Promise<{ record: ApiKeyRecord; key: string }> {
  const created = newRecord(input);
  await store.put(created.record);
  return created;
}

/** Named fields only, so a field added to the record later is never shown by accident. */
export function toPublicKey(record: ApiKeyRecord): PublicKey {
  const shown: PublicKey = { id: record.id, name: record.name, tier: record.tier, scopes: record.scopes, status: record.status, created_at: record.created_at };
  if (!record.scopes) delete shown.scopes;
  for (const field of ['updated_at', 'expires_at', 'rotated_at', 'revoked_at', 'account'] as const) {
    if (record[field] !== undefined) shown[field] = record[field];
  }
  if (record.limits !== undefined) shown.limits = record.limits.map((l) => ({ ...l }));
  return shown;
}

/**
 * The record after a rotation: `newHash` is the current secret; the old current ones keep working for
 * `graceMs` (none when 0); retired secrets whose grace is over are dropped.
 */
export function rotatedRecord(record: ApiKeyRecord, newHash: string, graceMs: number, nowMs = Date.now()): ApiKeyRecord {
  const now = new Date(nowMs).toISOString();
  const until = new Date(nowMs + graceMs).toISOString();
  const stillGraced = (record.previous_secrets ?? []).filter((p) => Date.parse(p.until) > nowMs);
  const retiring = graceMs > 0 ? record.secret_hashes.map((hash) => ({ hash, until })) : [];
  const { previous_secrets: _old, ...rest } = record;
  const rotated: ApiKeyRecord = { ...rest, secret_hashes: [newHash], rotated_at: now, updated_at: now };
  if (stillGraced.length + retiring.length > 0) rotated.previous_secrets = [...stillGraced, ...retiring];
  return rotated;
}

/** Active and not past its expiry. */
export function isUsable(record: ApiKeyRecord, nowMs = Date.now()): boolean {
  if (record.status !== 'active') return false;
  return record.expires_at === undefined || Date.parse(record.expires_at) > nowMs;
}

/** Why a new key does not fit the configured tiers (unknown tier, scopes beyond the tier's), or null. */
export function checkKeyAgainstTiers(
  tiers: Readonly<Record<string, Tier>>,
  input: Pick<NewKey, 'tier' | 'scopes'>,
): { code: 'unknown_tier' | 'validation_failed'; field: 'tier' | 'scopes'; message: string } | null {
  const tier = Object.hasOwn(tiers, input.tier) ? tiers[input.tier] : undefined;
  if (!tier) {
    return { code: 'unknown_tier', field: 'tier', message: `Unknown tier "${input.tier}"; configured tiers: ${Object.keys(tiers).join(', ')}.` };
  }
  if (!input.scopes || tier.scopes.includes('*')) return null;
  const outside = input.scopes.filter((scope) => !tier.scopes.includes(scope));
  if (outside.length === 0) return null;
  return { code: 'validation_failed', field: 'scopes', message: `Scopes ${outside.join(', ')} are not granted by tier "${input.tier}".` };
}

/** Every secret hash that may open the record: current ones and rotated-out ones still in their grace. */
export function allSecretHashes(record: ApiKeyRecord): string[] {
  return [...record.secret_hashes, ...(record.previous_secrets ?? []).map((p) => p.hash)];
}
