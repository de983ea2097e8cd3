import path from 'node:path';
import { REPO_ROOT, removeConfig, runCli, writeConfig } from '../support/gateway';

const fixture = (name: string) => path.join(REPO_ROOT, 'gateway/test/fixtures/config', name);

describe('sluice config check', () => {
  it('exits 0 for a valid file', async () => {
    const out = await runCli(['config', 'check', path.join(REPO_ROOT, 'config/gateway.example.yaml')]);
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
