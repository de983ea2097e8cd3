import { effectiveScopes } from '../../src/pipeline/authorize';

describe('effectiveScopes', () => {
  it("uses the tier's scopes when the key has none", () => {
    expect(effectiveScopes(undefined, ['a', 'b'])).toEqual(['a', 'b']);
  });
  it("uses the key's own scopes, never beyond the tier's", () => {
    expect(effectiveScopes(['a', 'c'], ['a', 'b'])).toEqual(['a']);
    expect(effectiveScopes(['*'], ['a'])).toEqual(['a']);
  });
  it('lets a "*" tier grant whatever the key lists', () => {
    expect(effectiveScopes(['x'], ['*'])).toEqual(['x']);
  });
});
