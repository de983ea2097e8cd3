import { z } from 'zod';
import { KEY_ID_PATTERN } from '../keys/records';
import type { ApiKeyRecord } from '../keys/types';
import { decodeUtf8, malformedTextPath, UNICODE_REQUIREMENT } from './unicode';
import { ACCOUNT_PATTERN, keyLimits } from './validation';

// `sluice keys export|import`: JSON lines, a header line, then one key record per line with its
// secret hashes (never a plaintext key), so a lost or emptied key store can be restored.

export const BACKUP_FORMAT = 'sluice-keys/1';

export function backupHeader(): string {
  return JSON.stringify({ format: BACKUP_FORMAT, exported_at: new Date().toISOString() });
}

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, { error: 'expected a SHA-256 hex hash' });
const time = z.iso.datetime({ offset: true });

const recordSchema = z.strictObject({
  id: z.string().regex(KEY_ID_PATTERN, { error: 'expected a key id like key_0123abcd' }),
  name: z.string().min(1),
  tier: z.string().min(1),
  scopes: z.array(z.string()).optional(),
  status: z.enum(['active', 'revoked']),
  account: z.string().regex(ACCOUNT_PATTERN, { error: 'expected an account name like acme' }).optional(),
  limits: keyLimits.optional(),
  created_at: time,
  updated_at: time.optional(),
  expires_at: time.optional(),
  rotated_at: time.optional(),
  revoked_at: time.optional(),
  secret_hashes: z.array(sha256).min(1),
  previous_secrets: z.array(z.strictObject({ hash: sha256, until: time })).optional(),
});

const headerSchema = z.strictObject({ format: z.literal(BACKUP_FORMAT), exported_at: time });

/** The bytes of a backup file as text; an error when they are not UTF-8 (never silently replaced). */
export function backupText(bytes: Uint8Array): string {
  const text = decodeUtf8(bytes);
  if (text === undefined) throw new Error('the backup is not valid UTF-8');
  return text;
}

/** The records of a backup, or an error naming the first bad line. */
export function parseBackup(text: string): ApiKeyRecord[] {
  const lines = text.split('\n').map((line, i) => ({ line, number: i + 1 })).filter(({ line }) => line.trim() !== '');
  if (lines.length === 0) throw new Error('the backup is empty');
  const parse = <T extends z.ZodType>(schema: T, { line, number }: { line: string; number: number }): z.output<T> => {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new Error(`line ${number}: not JSON`);
    }
    const malformed = malformedTextPath(json);
    if (malformed) throw new Error(`line ${number}: ${malformed.join('.') || 'line'}: expected ${UNICODE_REQUIREMENT}`);
    const result = schema.safeParse(json);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new Error(`line ${number}: ${issue.path.join('.') || 'line'}: ${issue.message}`);
    }
    return result.data;
  };
  parse(headerSchema, lines[0]);
  return lines.slice(1).map((line) => parse(recordSchema, line));
}
