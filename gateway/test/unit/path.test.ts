import { normaliseTarget, withoutParameters } from '../../src/http/paths';
import { GatewayError } from '../../src/errors/envelope';

describe('normaliseTarget', () => {
  it.each([
    ['/v1/users', '/v1/users', ''],
    ['/v1/users/', '/v1/users/', ''],
    ['/v1/users?limit=5&x=%2F', '/v1/users', '?limit=5&x=%2F'],
    ['/v1/users/../admin', '/v1/admin', ''],
    ['/v1/users/%2e%2e/admin', '/v1/admin', ''],
    ['/v1/users/%2E%2E/%2e%2e/%2e%2e/x', '/x', ''],
    ['//v1///users', '/v1/users', ''],
    ['/v1/./users', '/v1/users', ''],
    ['/../../etc/passwd', '/etc/passwd', ''],
    ['/v1/users/..', '/v1/', ''],
    ['/', '/', ''],
    ['/a%20b/%7Euser', '/a%20b/~user', ''],
    ['/v1/users/a:b@c', '/v1/users/a:b@c', ''],
    ['http://example.com/v1/users?x=1', '/v1/users', '?x=1'],
    ['http://example.com', '/', ''],
    ['/v1/users#frag', '/v1/users', ''],
  ])('%s → %s', (target, path, query) => {
    expect(normaliseTarget(target)).toEqual({ path, query });
  });

  it.each([
    ['/v1/users;x/42', '/v1/users;x/42'],
    ['/v1/users/42;v=1', '/v1/users/42;v=1'],
    ['/v1/users/a;b/../42', '/v1/users/42'],
    ['/v1/users/%2e%2e/x;y', '/v1/x;y'],
    ['/a;b=%41', '/a;b=A'],
    ['/a;b=c;d', '/a;b=c;d'],
    ['/...;x', '/...;x'],
    ['/..a;x', '/..a;x'],
    ['/a%252fb', '/a%252fb'],
    ['/a%25', '/a%25'],
  ])('keeps ;parameters: %s → %s', (target, path) => {
    expect(normaliseTarget(target).path).toBe(path);
  });

  // A segment that is `.`, `..` or empty to a servlet container (parameters removed) or a server that decodes again.
  it.each([
    '/v1/users/..;/admin',
    '/v1/users/..;jsessionid=1/admin',
    '/v1/users/.;/admin',
    '/v1/users/%2e%2e;/admin',
    '/v1/users/%2E%2e;x/admin',
    '/v1/users/.%2E;x/admin',
    '/v1/users/%2e.;x/admin',
    '/v1/users/%2e;x',
    '/v1/users/..;',
    '/v1/users;a/..;b/admin',
    '/v1/users/%252e%252e;/admin',
    '/v1/users/%252e%252e/admin',
    '/v1/users/%252E%252E/admin',
    '/v1/users/.%252e/admin',
    '/v1/users/%25252e%25252e/admin',
    '/v1/users/..%253b/admin',
    '/v1/users/..%25253bx/admin',
    '/v1/users/%252e%252e%252fadmin',
    '/v1/users/x%252f..%252fadmin',
    '/v1/users/%252e%252e%255cadmin',
    '/v1/users/;x/../admin',
    '/;jsessionid=1',
    '/v1/users/%3b',
    '/v1/users/..%3b/admin',
    '/v1/users/..%3B/admin',
    '/admin%3bx/secret',
  ])('refuses %s with invalid_request', (target) => {
    expect(() => normaliseTarget(target)).toThrow(GatewayError);
    try {
      normaliseTarget(target);
    } catch (err) {
      expect((err as GatewayError).code).toBe('invalid_request');
    }
  });

  it.each(['/v1/users%2F..%2Fadmin', '/v1/%5cadmin', '/v1/a%00b', '/v1\\admin', '/v1/%zz', '*', 'example.com:443'])(
    'refuses %s with invalid_request',
    (target) => {
      let thrown: unknown;
      try {
        normaliseTarget(target);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(GatewayError);
      expect((thrown as GatewayError).code).toBe('invalid_request');
    },
  );
});

describe('withoutParameters', () => {
  it.each([
    ['/v1/users', '/v1/users'],
    ['/admin;x/secret', '/admin/secret'],
    ['/admin;x', '/admin'],
    ['/a;1/b;2/c;3', '/a/b/c'],
    ['/a;x=1;y=2/b/', '/a/b/'],
    ['/a/b;x/', '/a/b/'],
    ['/', '/'],
  ])('%s → %s', (path, bare) => {
    expect(withoutParameters(path)).toBe(bare);
  });
});

describe('normaliseTarget: paths that are already normal', () => {
  // What normalising means for paths of characters that need no decoding: empty and `.` segments
  // go, `..` removes the segment before it, a trailing `/` stays (also after a dot segment).
  function reference(path: string): string {
    const segments: string[] = [];
    const raw = path.split('/');
    for (const segment of raw) {
      if (segment === '' || segment === '.') continue;
      if (segment === '..') segments.pop();
      else segments.push(segment);
    }
    const last = raw[raw.length - 1];
    const trailing = segments.length > 0 && (last === '' || last === '.' || last === '..');
    return '/' + segments.join('/') + (trailing ? '/' : '');
  }

  it('returns each such path as it is, and normalises every other spelling as before (random paths)', () => {
    const alphabet = ['/', '/', '/', '.', '.', 'a', 'b', 'Z', '0', '-', '_', '~', '!', '$', '&', "'", '(', ')', '*', '+', ',', '=', ':', '@'];
    let seed = 42;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let i = 0; i < 20_000; i++) {
      let path = '/';
      for (let length = random(14); length > 0; length--) path += alphabet[random(alphabet.length)];
      const expected = reference(path);
      expect({ path, normalised: normaliseTarget(`${path}?q=1`) }).toEqual({ path, normalised: { path: expected, query: '?q=1' } });
      expect(normaliseTarget(expected).path).toBe(expected); // normal forms are fixed points
    }
  });

  it.each(['/', '/v1/users', '/v1/users/', '/a.b/..c/...', "/x!$&'()*+,=:@~-_"])('keeps %s as it is', (path) => {
    expect(normaliseTarget(path).path).toBe(path);
  });

  it.each([
    ['/v1//users', '/v1/users'],
    ['/v1/./users', '/v1/users'],
    ['/v1/x/../users', '/v1/users'],
    ['/v1/users/.', '/v1/users/'],
    ['/v1/users/..', '/v1/'],
    ['/%76%31/users', '/v1/users'],
    ['/v1/us%20ers', '/v1/us%20ers'],
    ['/v1/é', '/v1/%C3%A9'],
  ])('still normalises %s (to %s)', (target, path) => {
    expect(normaliseTarget(target).path).toBe(path);
  });
});
