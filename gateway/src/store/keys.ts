import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Tier } from '../config/schema';
import type { ApiKeyRecord, NewKey, PublicKey } from './types';

// Key material shared by every store: how secrets are made, hashed and compared.

export const KEY_PREFIX = 'sk_live_';
export const IMPORTED_KEY_PATTERN = /^[A-Za-z0-9_-]{16,256}$/;

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

/** Timing-safe check that a record really holds this hash (the lookup index alone is not trusted). */
export function recordHasHash(record: ApiKeyRecord, secretHash: string): boolean {
  const wanted = Buffer.from(secretHash, 'hex');
  let found = false;
  for (const stored of record.secret_hashes) {
    const candidate = Buffer.from(stored, 'hex');
    if (candidate.length === wanted.length && timingSafeEqual(candidate, wanted)) found = true;
  }
  return found;
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
  return { record, key };
}

export function toPublicKey(record: ApiKeyRecord): PublicKey {
  const { secret_hashes: _hashes, ...rest } = record;
  return rest;
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
): { code: 'unknown_tier' | 'validation_failed'; message: string } | null {
  const tier = tiers[input.tier];
  if (!tier) {
    return { code: 'unknown_tier', message: `Unknown tier "${input.tier}"; configured tiers: ${Object.keys(tiers).join(', ')}.` };
  }
  if (!input.scopes || tier.scopes.includes('*')) return null;
  const outside = input.scopes.filter((scope) => !tier.scopes.includes(scope));
  if (outside.length === 0) return null;
  return { code: 'validation_failed', message: `Scopes ${outside.join(', ')} are not granted by tier "${input.tier}".` };
}
