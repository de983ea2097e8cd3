import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../src/config/loader';

const readme = readFileSync(path.resolve(__dirname, '../../../README.md'), 'utf8');

describe('README', () => {
  it('starts with the two commands a newcomer needs', () => {
    const firstLines = readme.split('\n').slice(0, 8).join('\n');
    expect(firstLines).toContain('npm install && npm start');
    expect(firstLines).toContain('npm test');
  });

  it('shows a config that the loader accepts', () => {
    const block = /```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const config = parseConfig(block!, { SLUICE_ADMIN_TOKEN: 'x'.repeat(32), REDIS_URL: 'redis://127.0.0.1:6379' });
    expect(config.routes[0].name).toBe('users');
  });

  it('shows a public-routes example that the loader accepts', () => {
    const section = readme.slice(readme.indexOf('## Public routes and anonymous callers'));
    const block = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block).toBeDefined();
    const config = parseConfig(block!, {});
    expect(config.anonymous_tier).toBe('public');
    expect(config.routes.map((r) => [r.name, r.auth])).toEqual([
      ['docs', 'none'],
      ['search', 'optional'],
      ['users', 'required'],
    ]);
  });
});
