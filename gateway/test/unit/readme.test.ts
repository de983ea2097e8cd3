import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../src/config/loader';

const REPO_ROOT = path.resolve(__dirname, '../../..');
const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');

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
});

describe('README names files that exist', () => {
  // A path it names exists in the repository, or a `cp` command in the README creates it.
  const copied = new Map([...readme.matchAll(/^\s*cp\s+(\S+)\s+(\S+)/gm)].map((m) => [m[2], m[1]]));
  const named = [...new Set([...readme.matchAll(/(?<![\w./$-])((?:config|deploy|k8s|gateway|load-tests|scripts|dist)\/[A-Za-z0-9_./-]*)/g)].map((m) => m[1].replace(/\.$/, '')))];

  it('finds the paths it names', () => expect(named.length).toBeGreaterThan(20));

  it.each(named)('%s', (name) => {
    const source = copied.get(name);
    if (source !== undefined) expect([name, 'copied from', source, existsSync(path.join(REPO_ROOT, source))]).toEqual([name, 'copied from', source, true]);
    else expect([name, existsSync(path.join(REPO_ROOT, name))]).toEqual([name, true]);
  });
});

describe('README npm commands exist', () => {
  const scripts = Object.keys((JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
  const named = [...new Set([...readme.matchAll(/\bnpm (?:run ([a-z0-9:_-]+)|(start|test)\b)/g)].map((m) => m[1] ?? m[2]))];

  it.each(named)('npm run %s', (name) => expect(scripts).toContain(name));
});

describe('README sluice commands exist, with the options they use', () => {
  const cli = path.join(REPO_ROOT, 'dist/cli.js');
  const lines = [...readme.matchAll(/(?:npx sluice|node dist\/cli\.js)((?: [^\n#]*)?)/g)].map((m) => m[1].trim());
  const commands = [...new Set(lines)];

  it('is built (npm run build) and the README has sluice commands', () => {
    expect(existsSync(cli)).toBe(true);
    expect(commands.length).toBeGreaterThan(5);
  });

  it.each(commands)('sluice %s', (line) => {
    const words: string[] = [];
    for (const word of line.split(/\s+/)) {
      if (!/^[a-z]+$/.test(word)) break;
      words.push(word);
    }
    const help = spawnSync(process.execPath, [cli, ...words, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain(`Usage: sluice ${words.join(' ')}`.trim());
    for (const option of line.match(/--[a-z][a-z-]*/g) ?? []) expect([option, help.stdout.includes(option)]).toEqual([option, true]);
  });
});
