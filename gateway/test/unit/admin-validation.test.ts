import { checkInput, createKeyInput, listKeysQuery, parseInput, updateKeyInput } from '../../src/admin/validation';
import { backupText, parseBackup } from '../../src/admin/backup';
import { GatewayError } from '../../src/errors/envelope';

// Body validation of the key API: the first zod problem becomes the seed's 400 shape.

function refusal(run: () => unknown): { status: number; code: string; message: string; details: unknown } {
  try {
    run();
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    return { status: err.status, code: err.code, message: err.message, details: err.options.details };
  }
  throw new Error('expected a refusal');
}

describe('parseInput', () => {
  it('names a missing field exactly as the seed example does', () => {
    expect(refusal(() => parseInput(createKeyInput, { name: 'x' }))).toEqual({
      status: 400,
      code: 'invalid_parameters',
      message: "The 'tier' field is required",
      details: { field: 'tier', requirement: 'required' },
    });
  });

  it('names ill-typed, nested and unknown fields, and a body that is not an object', () => {
    expect(refusal(() => parseInput(createKeyInput, { name: 'x', tier: [] })).details).toEqual({ field: 'tier', requirement: 'a tier name of at most 64 characters' });
    expect(refusal(() => parseInput(createKeyInput, { name: 'x', tier: 't', scopes: ['ok', 'not ok'] })).details).toEqual({
      field: 'scopes[1]',
      requirement: 'an array of at most 100 scopes like users:read',
    });
    expect(refusal(() => parseInput(createKeyInput, { name: 'x', tier: 't', extra: 1 }))).toMatchObject({
      message: "The 'extra' field is not allowed",
      details: { field: 'extra', requirement: 'not allowed' },
    });
    expect(refusal(() => parseInput(createKeyInput, null))).toMatchObject({ message: 'The request body must be a JSON object', details: { field: 'body' } });
    expect(refusal(() => parseInput(listKeysQuery, { limit: '0' }, 'parameter')).message).toBe("The 'limit' parameter must be an integer from 1 to 500");
  });

  it('returns the parsed value: trimmed names, unique scopes, default limit, null to clear in a patch', () => {
    expect(parseInput(createKeyInput, { name: ' Acme ', tier: 't', scopes: ['a', 'a', 'b'] })).toEqual({ name: 'Acme', tier: 't', scopes: ['a', 'b'] });
    expect(parseInput(listKeysQuery, {})).toEqual({ limit: 50 });
    expect(parseInput(updateKeyInput, { scopes: null, expires_at: null })).toEqual({ scopes: null, expires_at: null });
    expect(refusal(() => parseInput(updateKeyInput, {})).details).toEqual({
      field: 'body',
      requirement: 'a JSON object with at least one of name, tier, scopes, expires_at, limits',
    });
  });
});

describe('text that is not valid Unicode', () => {
  const UNICODE = 'valid Unicode text (no lone UTF-16 surrogates)';
  const lone = ['\ud800', '\udbff', '\udc00', '\udfff', 'a\ud800b', '\udc00\ud800', 'end\ud83d'];

  it.each(lone.map((s) => [JSON.stringify(s), s]))('%s is refused in every string of a create, patch or query, naming the field', (_label, bad) => {
    const cases: [() => unknown, string][] = [
      [() => parseInput(createKeyInput, { name: bad, tier: 'free' }), 'name'],
      [() => parseInput(createKeyInput, { name: 'n', tier: bad }), 'tier'],
      [() => parseInput(createKeyInput, { name: 'n', tier: 'free', scopes: ['a:b', bad] }), 'scopes[1]'],
      [() => parseInput(createKeyInput, { name: 'n', tier: 'free', expires_at: bad }), 'expires_at'],
      [() => parseInput(createKeyInput, { name: 'n', tier: 'free', key: bad }), 'key'],
      [() => parseInput(createKeyInput, { name: 'n', tier: 'free', [bad]: 1 }), 'body'],
      [() => parseInput(updateKeyInput, { name: bad }), 'name'],
      [() => parseInput(updateKeyInput, { scopes: [bad] }), 'scopes[0]'],
      [() => parseInput(updateKeyInput, { nested: { deeper: [1, bad] } }), 'nested.deeper[1]'],
      [() => parseInput(listKeysQuery, { cursor: bad }, 'parameter'), 'cursor'],
    ];
    for (const [run, field] of cases) {
      const refused = refusal(run);
      expect(refused).toMatchObject({ status: 400, code: 'invalid_parameters', details: { field, requirement: UNICODE } });
      expect(refused.message.isWellFormed()).toBe(true);
    }
  });

  it('the check is in checkInput, so the CLI refuses the same', () => {
    expect(checkInput(createKeyInput, { name: 'a\udfff', tier: 'free' })).toEqual({ problem: { field: 'name', requirement: UNICODE } });
  });

  it('valid text beyond ASCII passes untouched, a surrogate pair included', () => {
    for (const name of ['Zoë', '東京', '\u{1F600}', '\ud83d\ude00 pair', '\uFFFD', '\u{10FFFF}']) {
      expect(parseInput(createKeyInput, { name, tier: 'free' }).name).toBe(name);
    }
  });
});

describe('backups (sluice keys import)', () => {
  const header = JSON.stringify({ format: 'sluice-keys/1', exported_at: '2026-01-01T00:00:00Z' });
  const record = { id: 'key_0000aaaa', name: 'ok', tier: 'free', status: 'active', created_at: '2026-01-01T00:00:00Z', secret_hashes: ['a'.repeat(64)] };

  it('refuses a line with a lone surrogate in any string, naming the line and field', () => {
    for (const [patch, where] of [
      [{ name: 'x\ud800' }, 'name'],
      [{ tier: '\udc00' }, 'tier'],
      [{ scopes: ['a', '\udfff'] }, 'scopes.1'],
      [{ previous_secrets: [{ hash: 'b'.repeat(64), until: '\ud800' }] }, 'previous_secrets.0.until'],
    ] as const) {
      const text = `${header}\n${JSON.stringify({ ...record, ...patch })}\n`;
      expect(() => parseBackup(text)).toThrow(`line 2: ${where}: expected valid Unicode text (no lone UTF-16 surrogates)`);
    }
    expect(parseBackup(`${header}\n${JSON.stringify({ ...record, name: 'Zoë \u{1F600}' })}\n`)[0].name).toBe('Zoë \u{1F600}');
  });

  it('refuses bytes that are not UTF-8 instead of replacing them', () => {
    expect(() => backupText(Buffer.from([0x7b, 0xff, 0x7d]))).toThrow('the backup is not valid UTF-8');
    expect(backupText(Buffer.from('{"é":1}'))).toBe('{"é":1}');
  });
});
