import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT, removeConfig, runCli, writeConfig } from '../support/gateway';
import { closedPort } from '../support/ports';
import { startRedis, type TestRedis } from '../support/redis';

const fixture = (name: string) => path.join(REPO_ROOT, 'gateway/test/fixtures/config', name);

describe('sluice config check', () => {
  it('exits 0 for a valid file', async () => {
    const out = await runCli(['config', 'check', path.join(REPO_ROOT, 'config/gateway.example.yaml')], {
      ...process.env,
      SLUICE_ADMIN_TOKEN: 'cli-test-admin-token-0123456789abcdef',
    });
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('OK');
  });

  it('exits 1 and prints each problem with its path', async () => {
    const out = await runCli(['config', 'check', fixture('bad/bad-duration.yaml')]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/tiers\.\w+\.limits\[\d\]\.per: expected a duration like 1m/);
  });

  it('exits 1 for a missing file', async () => {
    const out = await runCli(['config', 'check', '/nonexistent/gateway.yaml']);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('/nonexistent/gateway.yaml');
  });

  it('never prints the value of an environment variable it interpolated, even where that value is the problem', async () => {
    const secret = 'super-secret-value';
    const file = writeConfig(
      'listen:\n  port: "${LEAKY}"\nadmin:\n  token: "${LEAKY}"\ntiers:\n  "${LEAKY}": { limits: [] }\n' +
        'upstreams:\n  u: { targets: ["http://${LEAKY}"] }\nroutes:\n  - { name: r, match: { path_prefix: "/${LEAKY}" }, upstream: u }\n',
    );
    try {
      const out = await runCli(['config', 'check', file], { ...process.env, LEAKY: secret });
      expect(out.code).toBe(1);
      expect(out.stderr).toContain('listen.port');
      expect(out.stdout + out.stderr).not.toContain(secret);
    } finally {
      removeConfig(file);
    }
  });
});

describe('sluice config check, typos', () => {
  it('names the closest known key for an unknown one', async () => {
    const file = writeConfig(
      'store:\n  timout_ms: 100\ntiers:\n  free: { limits: [{ requests: 1, per: 1m }] }\n' +
        'upstreams:\n  u: { targets: ["http://127.0.0.1:9001"] }\nroutes:\n  - { name: r, match: { path_prefix: /r, methods: [GET] }, upstream: u, retires: 2 }\n',
    );
    try {
      const out = await runCli(['config', 'check', file]);
      expect(out.code).toBe(1);
      expect(out.stderr).toContain("store.timout_ms: unknown key 'timout_ms' (did you mean 'timeout_ms'?)");
      expect(out.stderr).toContain("routes[0].retires: unknown key 'retires' (did you mean 'retries'?)");
    } finally {
      removeConfig(file);
    }
  });
});

describe('sluice --version', () => {
  const { version } = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };

  it.each(['--version', '-V'])('%s prints the package version', async (flag) => {
    const out = await runCli([flag]);
    expect(out.code).toBe(0);
    expect(out.stdout.trim()).toBe(version);
  });

  it('reads package.json at run time, wherever dist/ sits next to it', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-version-'));
    try {
      cpSync(path.join(REPO_ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true });
      symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
      writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'sluice', version: '9.8.7-test' }));
      const out = spawnSync(process.execPath, [path.join(dir, 'dist/cli.js'), '--version'], { encoding: 'utf8' });
      expect(out.stdout.trim()).toBe('9.8.7-test');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sluice keys, Redis unreachable', () => {
  it('says so in one line: no driver stack traces, no password', async () => {
    const password = 'cli-unreachable-pw-5e0b7d';
    const file = writeConfig({
      store: { redis: { url: `redis://:${password}@127.0.0.1:${await closedPort()}` } },
      tiers: { t: { limits: [] } },
      upstreams: { app: { targets: ['http://127.0.0.1:9'] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
    });
    try {
      const out = await runCli(['keys', 'list', '--config', file]);
      expect(out.code).toBe(1);
      expect(out.stderr.trim()).toBe('sluice: cannot reach the Redis key store named in the config');
      expect(out.stdout + out.stderr).not.toContain(password);
    } finally {
      removeConfig(file);
    }
  });
});

describe('sluice keys, typed input', () => {
  let redis: TestRedis;
  let file: string;
  beforeAll(async () => {
    redis = await startRedis({ destructive: true });
    file = writeConfig({
      store: { redis: { url: redis.url } },
      tiers: { free: { limits: [], scopes: ['users:read'] } },
      upstreams: { app: { targets: ['http://127.0.0.1:9'] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
    });
    expect((await runCli(['store', 'init', '--config', file])).code).toBe(0); // a new store, declared so
  });
  afterAll(async () => {
    if (file) removeConfig(file);
    await redis?.stop();
  });

  it.each([
    [['--expires-at', 'next week'], '--expires-at must be an ISO 8601 date-time with a time zone, like 2027-01-01T00:00:00Z'],
    [['--scopes', 'users:read,not a scope'], '--scopes must be an array of at most 100 scopes like users:read'],
  ])('an option it cannot take is named as the option, not as an HTTP field: %j', async (extra, message) => {
    const out = await runCli(['keys', 'create', '--config', file, '--tier', 'free', '--name', 'n', ...extra]);
    expect(out.code).toBe(1);
    expect(out.stderr.trim()).toBe(`sluice: ${message}`);
  });

  it('creates keys and lists them (the page size goes as a number)', async () => {
    for (let i = 0; i < 3; i++) expect((await runCli(['keys', 'create', '--config', file, '--tier', 'free', '--name', `k${i}`, '--json'])).code).toBe(0);
    const listed = await runCli(['keys', 'list', '--config', file, '--json']);
    expect(listed.code).toBe(0);
    expect(listed.stdout.trim().split('\n')).toHaveLength(3);
  });

  it('a tier that does not exist is a plain message', async () => {
    const out = await runCli(['keys', 'create', '--config', file, '--tier', 'gold', '--name', 'n']);
    expect(out.code).toBe(1);
    expect(out.stderr.trim()).toBe('sluice: Unknown tier "gold"; configured tiers: free.');
  });
});
