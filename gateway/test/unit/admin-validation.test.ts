import { createKeyInput, listKeysQuery, parseInput, updateKeyInput } from '../../src/admin/validation';
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
