import { RouteTable, upstreamPath } from '../../src/routing/route-table';
import type { Route } from '../../src/config/schema';

function route(name: string, path_prefix: string, methods?: string[], strip_prefix = false): Route {
  return { name, match: { path_prefix, methods }, upstream: 'u', auth: 'required', scopes: [], cost: 1, max_body_bytes: 10, strip_prefix, limits: {}, retries: 1 };
}

describe('RouteTable', () => {
  const table = new RouteTable([
    route('root', '/'),
    route('users', '/v1/users', ['GET', 'POST']),
    route('user-admin', '/v1/users/admin', ['DELETE']),
    route('strip', '/svc', undefined, true),
  ]);

  it('picks the longest matching prefix, on whole segments only', () => {
    expect(table.match('GET', '/v1/users')?.route.name).toBe('users');
    expect(table.match('GET', '/v1/users/42')?.route.name).toBe('users');
    expect(table.match('GET', '/v1/usersX')?.route.name).toBe('root');
    expect(table.match('DELETE', '/v1/users/admin/7')?.route.name).toBe('user-admin');
  });
  it('falls through to a shorter prefix when the method does not match', () => {
    expect(table.match('GET', '/v1/users/admin')?.route.name).toBe('users');
    expect(table.match('PUT', '/v1/users')?.route.name).toBe('root');
  });
  it('serves HEAD where GET is allowed', () => {
    expect(table.match('HEAD', '/v1/users')?.route.name).toBe('users');
  });
  it('returns nothing when no route matches', () => {
    expect(new RouteTable([route('users', '/v1/users', ['GET'])]).match('GET', '/v2')).toBeUndefined();
  });
  it('strips the prefix only when asked', () => {
    const strip = table.match('GET', '/svc/a/b')!;
    expect(upstreamPath(strip, '/svc/a/b')).toBe('/a/b');
    expect(upstreamPath(strip, '/svc')).toBe('/');
    expect(upstreamPath(table.match('GET', '/v1/users/1')!, '/v1/users/1')).toBe('/v1/users/1');
  });
  it('matches segments without their ;parameters, so they cannot dodge a narrower route', () => {
    expect(table.match('DELETE', '/v1/users;x/admin/7')?.route.name).toBe('user-admin');
    expect(table.match('DELETE', '/v1/users/admin;jsessionid=1')?.route.name).toBe('user-admin');
    expect(table.match('DELETE', '/v1;a/users;b/admin;c/7;d')?.route.name).toBe('user-admin');
    expect(table.match('GET', '/v1/users;x')?.route.name).toBe('users');
    expect(table.match('GET', '/v1/usersX;x')?.route.name).toBe('root');
  });
  it('strips the prefix segments whole, with their ;parameters', () => {
    const strip = table.match('GET', '/svc;x/a')!;
    expect(upstreamPath(strip, '/svc;x/a;y/b')).toBe('/a;y/b');
    expect(upstreamPath(strip, '/svc;x')).toBe('/');
    expect(upstreamPath(strip, '/svc/')).toBe('/');
    const deep = new RouteTable([route('deep', '/a/b/c', undefined, true)]).match('GET', '/a;1/b;2/c;3/d')!;
    expect(upstreamPath(deep, '/a;1/b;2/c;3/d;4')).toBe('/d;4');
    expect(upstreamPath(deep, '/a/b/c/d/e')).toBe('/d/e');
  });
});
