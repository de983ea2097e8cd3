import { normaliseTarget } from '../../src/http/paths';
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
