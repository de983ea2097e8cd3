import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/loader';
import { restartOnlyChanges, type Config } from '../../src/config/schema';
import { createCa, makeCertDir, removeCertDir, type IssuedCert } from '../support/certs';

const FIXTURES = join(__dirname, '../fixtures/config');
const EXAMPLE = join(__dirname, '../../../config/gateway.example.yaml');

const yamlFiles = (dir: string) =>
  readdirSync(join(FIXTURES, dir))
    .filter((f) => f.endsWith('.yaml'))
    .sort();

/** Runs `fn`, expecting a ConfigError, and returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError, but the config was accepted');
}

const MINIMAL = `
tiers:
  free: { limits: [{ requests: 60, per: 1m }], scopes: [users:read] }
upstreams:
  users: { targets: [http://127.0.0.1:9001] }
routes:
  - { name: users, match: { path_prefix: /v1/users }, upstream: users }
`;

describe('good fixtures', () => {
  test.each(yamlFiles('good'))('%s parses', (file) => {
    const config = loadConfigFile(join(FIXTURES, 'good', file), {});
    expect(config.routes.length).toBeGreaterThan(0);
  });

  const EXAMPLE_TOKEN = 'example-admin-token-from-the-env-0123456789';

  test('the example config parses, with the admin token from the environment and the failed-token defaults', () => {
    const config = loadConfigFile(EXAMPLE, { SLUICE_ADMIN_TOKEN: EXAMPLE_TOKEN });
    expect(config.admin).toEqual({
      host: '127.0.0.1',
      port: 9090,
      token: EXAMPLE_TOKEN,
      rotation_grace: 86_400_000,
      failed_tokens: { max_attempts: 10, per: 60_000, block_for: 300_000 },
    });
    expect(config.store.redis).toBeUndefined();
    expect(Object.keys(config.tiers)).toEqual(['public', 'free', 'pro']);
    expect(config.anonymous_tier).toBe('public');
    expect(config.tiers.free.limits).toEqual([
      { requests: 60, per: 60_000 },
      { requests: 1000, per: 86_400_000 },
    ]);
    expect(config.upstreams.demo).toEqual({ targets: ['http://127.0.0.1:9001'], timeout_ms: 5000, connections: 128, breaker: { failures: 5, cooldown: 10_000, on_5xx: false } });
    expect(config.routes.map((r) => [r.name, r.match.path_prefix, r.match.methods, r.upstream, r.auth, r.scopes])).toEqual([
      ['users', '/v1/users', ['GET', 'POST'], 'demo', 'required', ['users:read']],
      ['echo', '/v1/echo', undefined, 'demo', 'required', ['echo:read']],
      ['admin-only', '/v1/admin', undefined, 'demo', 'required', ['admin']],
      ['docs', '/v1/docs', ['GET'], 'demo', 'none', []],
    ]);
    expect(config.keys).toEqual([]);
  });

  test('the example ships no default admin token: without SLUICE_ADMIN_TOKEN it is refused', () => {
    expect(configError(() => loadConfigFile(EXAMPLE, {})).problems).toEqual(['admin.token: environment variable SLUICE_ADMIN_TOKEN is not set']);
  });

  test('defaults are applied', () => {
    const expected: Config = {
      listen: {
        host: '0.0.0.0',
        port: 8080,
        max_header_bytes: 16384,
        max_header_count: 100,
        underscores_in_headers: 'drop',
        max_in_flight: 0,
        headers_timeout: 20_000,
        body_timeout: 10_000,
        send_timeout: 8_000,
        request_buffer_bytes: 65_536,
      },
      admin: { host: '127.0.0.1', port: 9090, rotation_grace: 86_400_000, failed_tokens: { max_attempts: 10, per: 60_000, block_for: 300_000 } },
      store: { timeout_ms: 100, max_wait_ms: 2000, replicas_hint: 1, cache: { ttl: 5000, max_entries: 10000 } },
      failure_policy: 'fail_open_local',
      allow_custom_methods: [],
      trusted_proxies: [],
      lifecycle: { drain_delay: 5000, grace: 30000 },
      rate_limiting: { ietf_headers: false, failed_keys: { max_attempts: 20, per: 60_000, block_for: 300_000 }, concurrency_lease: 30_000 },
      metrics: { default_labels: {} },
      log: { level: 'info', access_sample: 1 },
      tiers: { free: { limits: [], scopes: [] } },
      upstreams: { app: { targets: ['http://127.0.0.1:9001'], timeout_ms: 30000, connections: 128, breaker: { failures: 5, cooldown: 10_000, on_5xx: false } } },
      routes: [
        {
          name: 'all',
          match: { path_prefix: '/' },
          upstream: 'app',
          auth: 'required',
          scopes: [],
          cost: 1,
          max_body_bytes: 10 * 1024 * 1024,
          strip_prefix: false,
          limits: {},
          retries: 1,
        },
      ],
      keys: [],
    };
    expect(loadConfigFile(join(FIXTURES, 'good/minimal.yaml'), {})).toEqual(expected);
  });

  test('values are normalised: durations and sizes in ms and bytes, origins and prefixes trimmed', () => {
    const config = loadConfigFile(join(FIXTURES, 'good/full.yaml'), {});
    expect(config.listen.max_header_bytes).toBe(32 * 1024);
    expect(config.store).toEqual({
      redis: { url: 'redis://127.0.0.1:6379/2', key_prefix: 'test:' },
      timeout_ms: 1000,
      max_wait_ms: 2000,
      replicas_hint: 3,
      cache: { ttl: 2000, max_entries: 500 },
    });
    expect(config.lifecycle).toEqual({ drain_delay: 0, grace: 10_000 });
    expect(config.upstreams.users.targets).toEqual(['http://127.0.0.1:9001', 'https://users.internal:8443']);
    expect(config.routes[0]).toEqual({
      name: 'users',
      match: { path_prefix: '/v1/users', methods: ['GET', 'POST'] },
      upstream: 'users',
      auth: 'required',
      scopes: ['users:read'],
      cost: 2,
      timeout_ms: 2000,
      max_body_bytes: 1024 * 1024,
      strip_prefix: true,
      limits: { free: [{ requests: 5, per: 1000 }] },
      retries: 1,
    });
    expect(config.rate_limiting).toEqual({ ietf_headers: true, failed_keys: { max_attempts: 5, per: 30_000, block_for: 60_000 }, concurrency_lease: 30_000 });
    expect(config.keys[0]).toEqual({ name: 'demo', tier: 'free', key: 'sk_test_0123456789abcdef', scopes: ['users:read'] });
  });

  test('sentinel and cluster blocks are kept as written', () => {
    expect(loadConfigFile(join(FIXTURES, 'good/sentinel.yaml'), {}).store.redis).toEqual({
      sentinel: { name: 'mymaster', sentinels: ['127.0.0.1:26379', '127.0.0.1:26380', '[::1]:26381'] },
      password: 's3cret',
      db: 1,
      key_prefix: 'sluice:',
    });
    expect(loadConfigFile(join(FIXTURES, 'good/cluster.yaml'), {}).store.redis?.cluster?.nodes).toHaveLength(3);
  });

  test('the result is deeply frozen', () => {
    const config = parseConfig(MINIMAL, {});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.tiers.free.limits[0])).toBe(true);
    expect(Object.isFrozen(config.routes[0].match)).toBe(true);
    expect(() => {
      (config.listen as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      config.routes.push(config.routes[0]);
    }).toThrow(TypeError);
  });
});

describe('bad fixtures: one file per failure kind, each expecting exact problem lines', () => {
  test.each(yamlFiles('bad'))('%s', (file) => {
    const path = join(FIXTURES, 'bad', file);
    const expected = readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('# expect: '))
      .map((line) => line.slice('# expect: '.length));
    expect(expected.length).toBeGreaterThan(0);

    const error = configError(() => loadConfigFile(path, {}));
    expect(error.problems).toEqual(expected);
    expect(error.message).toBe(`${path}:\n${expected.join('\n')}`);
  });
});

describe('loading', () => {
  test('a missing file is a ConfigError naming the file', () => {
    const error = configError(() => loadConfigFile('/nonexistent/sluice.yaml', {}));
    expect(error.problems).toEqual(['<root>: file not found']);
    expect(error.message).toBe('/nonexistent/sluice.yaml:\n<root>: file not found');
    expect(error.file).toBe('/nonexistent/sluice.yaml');
  });

  test('without a file the message is just the problems', () => {
    const error = configError(() => parseConfig('listen: { prot: 1 }\nlog: { level: loud }\n' + MINIMAL, {}));
    expect(error.message).toBe(
      "listen.prot: unknown key 'prot' (did you mean 'port'?)\nlog.level: expected one of fatal, error, warn, info, debug, trace, silent",
    );
    expect(error.name).toBe('ConfigError');
    expect(error).toBeInstanceOf(Error);
  });
});

describe('environment interpolation', () => {
  test('${VAR} and ${VAR:-default} inside string values', () => {
    const config = parseConfig(`admin:\n  token: \${TOKEN}\n  host: \${HOST:-127.0.0.2}\n${MINIMAL}`, { TOKEN: 'tok-0123456789abcdef0123456789abcdef' });
    expect(config.admin.token).toBe('tok-0123456789abcdef0123456789abcdef');
    expect(config.admin.host).toBe('127.0.0.2');
  });

  test('the default also covers an empty variable, as in the shell', () => {
    expect(parseConfig(`admin:\n  host: \${HOST:-127.0.0.2}\n${MINIMAL}`, { HOST: '' }).admin.host).toBe('127.0.0.2');
  });

  test('references are replaced within a longer string', () => {
    const config = parseConfig(`store:\n  redis:\n    url: redis://\${REDIS_HOST}:\${REDIS_PORT:-6379}/0\n${MINIMAL}`, {
      REDIS_HOST: 'redis.internal',
    });
    expect(config.store.redis?.url).toBe('redis://redis.internal:6379/0');
  });

  test('$${ is a literal ${', () => {
    const config = parseConfig(`${MINIMAL}keys:\n  - { name: "a $\${B} $\${C:-d}", tier: free, key: sk_test_0123456789abcdef }\n`, { B: 'x' });
    expect(config.keys[0].name).toBe('a ${B} ${C:-d}');
  });

  test('numbers and booleans may come from the environment as strings', () => {
    const yaml = `listen: { port: "\${PORT}" }\nstore: { timeout_ms: "\${TIMEOUT}" }\n${MINIMAL}`.replace(
      'upstream: users }',
      'upstream: users, cost: "${COST}", strip_prefix: "${STRIP}", max_body_bytes: "${BODY}" }',
    );
    const config = parseConfig(yaml, { PORT: '8081', TIMEOUT: '1000', COST: '3', STRIP: 'true', BODY: '1MB' });
    expect(config.listen.port).toBe(8081);
    expect(config.store.timeout_ms).toBe(1000);
    expect(config.routes[0]).toMatchObject({ cost: 3, strip_prefix: true, max_body_bytes: 1024 * 1024 });
  });

  test('an environment value cannot inject YAML', () => {
    const token = 'x\nlisten: { port: 1 }\n'.padEnd(40, '0');
    const config = parseConfig(`admin:\n  token: \${TOKEN}\n${MINIMAL}`, { TOKEN: token });
    expect(config.admin.token).toBe(token);
    expect(config.listen.port).toBe(8080);
  });

  test('map keys are not interpolated', () => {
    const error = configError(() => parseConfig(`listen:\n  \${KEY}: 1\n${MINIMAL}`, { KEY: 'port' }));
    expect(error.problems).toEqual([`listen["\${KEY}"]: unknown key '\${KEY}'`]);
  });

  test('every missing variable is reported, together with the other problems', () => {
    const error = configError(() =>
      parseConfig(`listen: { port: "\${PORT}", host: "\${HOST}" }\nlog: { level: loud }\n${MINIMAL}`, {}),
    );
    expect(error.problems).toEqual([
      'listen.port: environment variable PORT is not set',
      'listen.host: environment variable HOST is not set',
      'log.level: expected one of fatal, error, warn, info, debug, trace, silent',
    ]);
  });

  describe('a secret from the environment never appears in an error message', () => {
    const SECRET = 'sk_live_Sup3rS3cretValue_42';
    const cases: [string, string, string][] = [
      ['an unknown upstream', MINIMAL.replace('upstream: users }', 'upstream: "${S}" }'), 'routes[0].upstream: unknown upstream "${S}"'],
      ['an unknown tier', `${MINIMAL}keys: [{ name: k, tier: "\${S}", key: sk_test_0123456789abcdef }]\n`, 'keys[0].tier: unknown tier "${S}"'],
      [
        'a scope outside the tier',
        `${MINIMAL}keys: [{ name: k, tier: free, key: sk_test_0123456789abcdef, scopes: ["x:\${S}"] }]\n`,
        'keys[0].scopes[0]: scope "x:${S}" is not allowed by tier "free"',
      ],
      ['a bad redis url', `store: { redis: { url: "\${S}" } }\n${MINIMAL}`, 'store.redis.url: expected a redis:// or rediss:// URL'],
      ['a bad port', `listen: { port: "\${S}" }\n${MINIMAL}`, 'listen.port: expected an integer from 0 to 65535'],
      ['a bad seed key', `${MINIMAL}keys: [{ name: k, tier: free, key: "\${S}!" }]\n`, 'keys[0].key: expected 16 to 256 characters of A-Z, a-z, 0-9, _ and -'],
      [
        'a duplicated seed key',
        `${MINIMAL}keys: [{ name: a, tier: free, key: "\${S}" }, { name: b, tier: free, key: "\${S}" }]\n`,
        'keys[1].key: same key as keys[0]',
      ],
    ];
    test.each(cases)('%s', (_what, yaml, expected) => {
      const error = configError(() => parseConfig(yaml, { S: SECRET }));
      expect(error.problems).toEqual([expected]);
      expect(error.message).not.toContain(SECRET);
      expect(error.message).not.toContain('Sup3r');
    });
  });
});

describe('YAML details', () => {
  test('a leading --- document marker is fine', () => {
    expect(parseConfig(`---\n${MINIMAL}`, {}).routes).toHaveLength(1);
  });

  test('a __proto__ key is an unknown key, not a prototype', () => {
    const error = configError(() => parseConfig(`listen:\n  __proto__: { port: 1 }\n${MINIMAL}`, {}));
    expect(error.problems).toEqual(["listen.__proto__: unknown key '__proto__'"]);
  });
});

describe('restart-only sections (marked in the schema)', () => {
  const base = parseConfig(MINIMAL);
  test.each([
    ['listen: { port: 8181 }', ['listen']],
    ['store: { timeout_ms: 250 }', ['store']],
    ['failure_policy: fail_closed', ['failure_policy']],
    ['lifecycle: { grace: 5s }', ['lifecycle']],
    ['rate_limiting: { failed_keys: { max_attempts: 3 } }', ['rate_limiting.failed_keys']],
    ['metrics: { default_labels: { instance: a } }', ['metrics.default_labels']],
    ['rate_limiting: { ietf_headers: true }', []],
    ['log: { level: debug }', []],
    ['trusted_proxies: [10.0.0.0/8]', []],
  ])('%s → %j', (change, expected) => {
    expect(restartOnlyChanges(base, parseConfig(`${change}\n${MINIMAL}`))).toEqual(expected);
  });
});

describe('public routes (auth, anonymous_tier)', () => {
  const open = (route: string, top = 'anonymous_tier: free\n') =>
    `${top}tiers:\n  free: { limits: [{ requests: 60, per: 1m }], scopes: [users:read] }\nupstreams:\n  users: { targets: [http://127.0.0.1:9001] }\nroutes:\n  - ${route}\n`;

  test('auth defaults to required, and anonymous_tier to none at all', () => {
    const config = parseConfig(MINIMAL, {});
    expect(config.routes[0].auth).toBe('required');
    expect(config.anonymous_tier).toBeUndefined();
  });

  test('the anonymous tier may be any tier, also one keys use; an empty scopes list on auth: none is no scope', () => {
    const config = parseConfig(open('{ name: docs, match: { path_prefix: /docs }, upstream: users, auth: none, scopes: [] }'), {});
    expect(config.anonymous_tier).toBe('free');
    expect(config.routes[0]).toMatchObject({ auth: 'none', scopes: [] });
  });

  test('scopes on an auth: optional route are kept: they apply to keyed callers', () => {
    const config = parseConfig(open('{ name: s, match: { path_prefix: /s }, upstream: users, auth: optional, scopes: [users:read] }'), {});
    expect(config.routes[0]).toMatchObject({ auth: 'optional', scopes: ['users:read'] });
  });

  test('an anonymous_tier without any open route is allowed (nothing uses it yet)', () => {
    expect(parseConfig(open('{ name: s, match: { path_prefix: /s }, upstream: users }'), {}).anonymous_tier).toBe('free');
  });

  test.each([
    ['auth: none, no anonymous_tier', open('{ name: d, match: { path_prefix: /d }, upstream: users, auth: none }', ''), ['routes[0].auth: auth: none needs a top-level anonymous_tier (the tier of requests without a key)']],
    ['auth: optional, no anonymous_tier', open('{ name: d, match: { path_prefix: /d }, upstream: users, auth: optional }', ''), ['routes[0].auth: auth: optional needs a top-level anonymous_tier (the tier of requests without a key)']],
    ['scopes on auth: none', open('{ name: d, match: { path_prefix: /d }, upstream: users, auth: none, scopes: [users:read] }'), ['routes[0].scopes: not allowed with auth: none (no key, so no scopes to check)']],
    ['an unknown anonymous_tier', open('{ name: d, match: { path_prefix: /d }, upstream: users, auth: none }', 'anonymous_tier: guests\n'), ['anonymous_tier: unknown tier "guests"']],
    ['an anonymous_tier that is not a name', open('{ name: d, match: { path_prefix: /d }, upstream: users, auth: none }', 'anonymous_tier: "Guests!"\n'), ['anonymous_tier: expected a name made of a-z, 0-9, _ and -', 'anonymous_tier: unknown tier "Guests!"']],
    ['an unknown auth value', open('{ name: d, match: { path_prefix: /d }, upstream: users, auth: public }'), ['routes[0].auth: expected required, optional or none']],
  ])('refuses %s', (_, yaml, problems) => {
    expect(configError(() => parseConfig(yaml, {})).problems).toEqual(problems);
  });
});

describe('TLS settings on reload: other files reload, TLS on or off (or client_auth) needs a restart', () => {
  const dir = makeCertDir();
  const ca = createCa(dir);
  const first = ca.issue('first');
  const second = ca.issue('second');
  afterAll(() => removeCertDir(dir));

  const listen = (tls: string) => `listen: { port: 8080${tls ? `, tls: ${tls}` : ''} }\nadmin: { tls: { cert_file: ${first.cert}, key_file: ${first.key} } }\n${MINIMAL}`;
  const withFiles = (cert: IssuedCert, extra = '') => `{ cert_file: ${cert.cert}, key_file: ${cert.key}${extra} }`;

  test.each([
    ['other certificate files', withFiles(first), withFiles(second), []],
    ['a client CA added with client_auth', withFiles(first), withFiles(first, `, ca_file: ${ca.cert}, client_auth: optional`), ['listen']],
    ['client_auth changed', withFiles(first, `, ca_file: ${ca.cert}, client_auth: optional`), withFiles(first, `, ca_file: ${ca.cert}, client_auth: require`), ['listen']],
    ['TLS turned off', withFiles(first), '', ['listen']],
    ['TLS turned on', '', withFiles(first), ['listen']],
  ])('%s', (_what, before, after, expected) => {
    expect(restartOnlyChanges(parseConfig(listen(before)), parseConfig(listen(after)))).toEqual(expected);
  });

  test('admin.tls off is a restart; its files changing is not', () => {
    const admin = (tls: string) => `admin: { port: 9090${tls ? `, tls: ${tls}` : ''} }\n${MINIMAL}`;
    expect(restartOnlyChanges(parseConfig(admin(withFiles(first))), parseConfig(admin(withFiles(second))))).toEqual([]);
    expect(restartOnlyChanges(parseConfig(admin(withFiles(first))), parseConfig(admin('')))).toEqual(['admin']);
  });

  test('an upstream tls section on https:// targets is accepted; reject_unauthorized defaults to true', () => {
    const config = parseConfig(MINIMAL.replace('upstreams:\n  users: { targets: [http://127.0.0.1:9001] }', `upstreams:\n  users: { targets: [https://127.0.0.1:9443], tls: { ca_file: ${ca.cert} } }`));
    expect(config.upstreams.users.tls).toEqual({ ca_file: ca.cert, reject_unauthorized: true });
  });
});
