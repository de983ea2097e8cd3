import { z } from 'zod';
import { GatewayError } from '../errors/envelope';
import { IMPORTED_KEY_PATTERN, IMPORTED_KEY_REQUIREMENT, SCOPE_PATTERN } from '../config/patterns';
import { KEY_ID_PATTERN } from '../keys/records';
import { malformedTextPath, UNICODE_REQUIREMENT } from './unicode';
import { parseDuration } from '../config/duration';

// The shapes the key API accepts (zod), and how the first problem becomes a 400 invalid_parameters
// with `details.field` and `details.requirement`. Each error text is the requirement, worded to follow
// "must be". Semantic checks (does the tier exist, is the date in the future) are the service's: 422.


const nameText = 'a non-empty string of at most 200 characters';
const name = z.string({ error: nameText }).trim().min(1, { error: nameText }).max(200, { error: nameText });
const tierText = 'a tier name of at most 64 characters';
const tier = z.string({ error: tierText }).min(1, { error: tierText }).max(64, { error: tierText });
const scopeText = 'an array of at most 100 scopes like users:read';
const scopes = z
  .array(z.string({ error: scopeText }).regex(SCOPE_PATTERN, { error: scopeText }), { error: scopeText })
  .max(100, { error: scopeText })
  .transform((list) => [...new Set(list)]);
const expiresAt = z.iso.datetime({ offset: true, error: 'an ISO 8601 date-time with a time zone, like 2027-01-01T00:00:00Z' });
const key = z.string({ error: 'a string' }).regex(IMPORTED_KEY_PATTERN, { error: IMPORTED_KEY_REQUIREMENT });
const accountText = 'an account name of 1 to 64 characters: letters, digits, _ . - (starting with a letter or digit)';
/** Also a Redis hash tag and a log field, so no braces, spaces or colons. */
export const ACCOUNT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const account = z.string({ error: accountText }).regex(ACCOUNT_PATTERN, { error: accountText });
const limitsText = 'an array of at most 20 limits like {"requests": 100, "per": "1m"}, each window length once';
const keyLimit = z.strictObject(
  {
    requests: z.number({ error: 'a positive integer' }).int({ error: 'a positive integer' }).min(1, { error: 'a positive integer' }).max(Number.MAX_SAFE_INTEGER, { error: 'a positive integer' }),
    per: z.string({ error: 'a duration like 1m, 1h or 1d' }).refine((text) => parseDuration(text) !== undefined, { error: 'a duration like 1m, 1h or 1d' }),
  },
  { error: limitsText },
);
/** A key's own limits (replacing its tier's); `per` is kept as written, like the config's. */
export const keyLimits = z
  .array(keyLimit, { error: limitsText })
  .max(20, { error: limitsText })
  .refine((list) => new Set(list.map((l) => parseDuration(l.per))).size === list.length, { error: limitsText });

const object = { error: 'a JSON object' };

export const createKeyInput = z.strictObject(
  { name, tier, scopes: scopes.optional(), expires_at: expiresAt.optional(), key: key.optional(), account: account.optional(), limits: keyLimits.optional() },
  object,
);
export type CreateKeyInput = z.output<typeof createKeyInput>;

/**
 * null clears an optional field: `scopes: null` = the tier's scopes again, `expires_at: null` = never,
 * `limits: null` = the tier's limits again. `account` is accepted here only to be refused with a 422
 * by the service (it is set at creation only), rather than as an unknown field.
 */
export const updateKeyInput = z
  .strictObject(
    {
      name: name.optional(),
      tier: tier.optional(),
      scopes: scopes.nullable().optional(),
      expires_at: expiresAt.nullable().optional(),
      limits: keyLimits.nullable().optional(),
      account: z.unknown().optional(),
    },
    object,
  )
  .refine((patch) => Object.keys(patch).length > 0, { error: 'a JSON object with at least one of name, tier, scopes, expires_at, limits' });
export type UpdateKeyInput = z.output<typeof updateKeyInput>;

/** A rotation takes no parameters; an empty object is allowed so clients may always send JSON. */
export const rotateKeyInput = z.strictObject({}, object);

const limitText = 'an integer from 1 to 500';
export const listKeysQuery = z.strictObject({
  cursor: z.string().regex(KEY_ID_PATTERN, { error: 'a next_cursor value from a previous page' }).optional(),
  limit: z
    .string()
    .regex(/^[0-9]{1,3}$/, { error: limitText })
    .transform(Number)
    .refine((n) => n >= 1 && n <= 500, { error: limitText })
    .default(50),
});

type Issue = z.core.$ZodIssue;

/** `['scopes', 1]` → `scopes[1]`. */
function formatPath(path: readonly PropertyKey[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i > 0 ? '.' : ''}${String(part)}`)).join('');
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const part of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value;
}

/** The seed's 400: `{"code":"invalid_parameters","message":"The 'tier' field is required","details":{"field":"tier","requirement":"required"}}`. */
export function invalidParameters(field: string, requirement: string, message: string): GatewayError {
  return new GatewayError('invalid_parameters', { message, details: { field, requirement } });
}

/** The first problem of an input: the field ('body' for the whole), and what it must be ('required', 'not allowed' or a requirement). */
export interface InputProblem {
  field: string;
  requirement: string;
}

function problemOf(issue: Issue, input: unknown): InputProblem {
  if (issue.code === 'unrecognized_keys') return { field: formatPath([...issue.path, issue.keys[0]]), requirement: 'not allowed' };
  if (issue.path.length === 0) return { field: 'body', requirement: issue.message };
  const field = formatPath(issue.path);
  return { field, requirement: valueAt(input, issue.path) === undefined ? 'required' : issue.message };
}

/** Validates `input` for any edge (HTTP, the CLI): the typed value, or its first problem. */
export function checkInput<T extends z.ZodType>(schema: T, input: unknown): { value: z.output<T> } | { problem: InputProblem } {
  // Before the schema: its messages may name an unknown key, which must not carry a lone surrogate either.
  const malformed = malformedTextPath(input);
  if (malformed) return { problem: { field: malformed.length === 0 ? 'body' : formatPath(malformed), requirement: UNICODE_REQUIREMENT } };
  const result = schema.safeParse(input);
  return result.success ? { value: result.data } : { problem: problemOf(result.error.issues[0], input) };
}

/** Validates an HTTP input, or throws 400 invalid_parameters naming the first problem. */
export function parseInput<T extends z.ZodType>(schema: T, input: unknown, noun: 'field' | 'parameter' = 'field'): z.output<T> {
  const checked = checkInput(schema, input);
  if ('value' in checked) return checked.value;
  const { field, requirement } = checked.problem;
  if (field === 'body') throw invalidParameters(field, requirement, `The request body must be ${requirement}`);
  if (requirement === 'required' || requirement === 'not allowed') throw invalidParameters(field, requirement, `The '${field}' ${noun} is ${requirement}`);
  throw invalidParameters(field, requirement, `The '${field}' ${noun} must be ${requirement}`);
}
