import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { loadConfigFile } from '../../src/config/loader';

// Every commented example in a shipped config must pass `sluice config check` once uncommented, in
// place, as a user would: the file with one example block uncommented (and, for a block inside an
// example, with its enclosing block uncommented too) goes through loadConfigFile, which is what
// `config check` runs.
//
// An example block is a run of comment lines whose first line is a config key (`# store:`,
// `  # tls:`): lowercase snake_case followed by a colon. It goes on over comment lines at the same
// column that are indented deeper, or are another key or list item at its level; a blank comment line
// or prose (`# or a Cluster:`) ends it. An alternative to a key that is already set must therefore be
// written so that uncommenting it is valid (another `failure_policy:` below the real one is not).
// Files an example names (`cert_file:`, `key_file:`, `ca_file:`, any `*_file:`) are replaced by
// throwaway PEM files generated here (a self-signed certificate and its key), so TLS examples are
// checked too; nothing is skipped.

const REPO_ROOT = path.resolve(__dirname, '../../..');
const repo = (...parts: string[]) => path.join(REPO_ROOT, ...parts);

/** What the shipped configs read from the environment, as a deployment would set it. */
const ENV = {
  REDIS_URL: 'redis://127.0.0.1:6379/0',
  REDIS_PASSWORD: 'redis-password-for-the-test',
  SLUICE_ADMIN_TOKEN: 'an-admin-token-of-at-least-32-characters',
  SLUICE_SEED_KEY: 'sk_test_0123456789abcdef0123',
  HOSTNAME: 'test-host',
};

const KEY_LINE = /^[a-z_][a-z0-9_]*:(\s|$)/;

type Block = { first: number; last: number; column: number };

/** The example blocks of a config text (line indexes, 0-based). */
function exampleBlocks(lines: string[]): Block[] {
  const blocks: Block[] = [];
  const comment = (line: string) => /^(\s*)# ?(.*)$/.exec(line);
  for (let i = 0; i < lines.length; i++) {
    const start = comment(lines[i]);
    if (!start || !KEY_LINE.test(start[2])) continue;
    const column = start[1].length;
    let last = i;
    for (let j = i + 1; j < lines.length; j++) {
      const next = comment(lines[j]);
      if (!next || next[1].length !== column) break;
      const content = next[2];
      if (content === '' || !(/^\s/.test(content) || KEY_LINE.test(content) || content.startsWith('- '))) break;
      last = j;
    }
    blocks.push({ first: i, last, column });
    i = last;
  }
  return blocks;
}

function uncomment(lines: string[], block: Block): string[] {
  return lines.map((line, i) => (i < block.first || i > block.last ? line : line.slice(0, block.column) + line.slice(block.column).replace(/^# ?/, '')));
}

/** Each example uncommented alone, then each example inside it with it: [label, text]. */
function variants(lines: string[], within?: Block, label = ''): [string, string][] {
  return exampleBlocks(lines)
    .filter((b) => !within || (b.first >= within.first && b.last <= within.last && b.column > within.column))
    .flatMap((block) => {
      const name = `${label}${label ? ' > ' : ''}line ${block.first + 1} (${lines[block.first].trim()})`;
      const text = uncomment(lines, block);
      return [[name, text.join('\n')] as [string, string], ...variants(text, block, name)];
    });
}

/** The gateway configs that ship: config/, the compose config, and every config a kustomization turns into a ConfigMap. */
function shippedConfigs(): string[] {
  const under = (dir: string, name: RegExp): string[] =>
    readdirSync(dir).flatMap((entry) => {
      const full = path.join(dir, entry);
      return statSync(full).isDirectory() ? under(full, name) : name.test(entry) ? [full] : [];
    });
  const fromKustomizations = under(repo('k8s'), /^kustomization\.ya?ml$/).flatMap((file) => {
    const generators = (parse(readFileSync(file, 'utf8')) as { configMapGenerator?: { files?: string[] }[] }).configMapGenerator ?? [];
    return generators.flatMap((g) => (g.files ?? []).map((f) => path.resolve(path.dirname(file), f.split('=').pop()!)));
  });
  return [...under(repo('config'), /\.ya?ml$/), ...under(repo('deploy/compose'), /\.ya?ml$/), ...fromKustomizations].map((f) =>
    path.relative(REPO_ROOT, f),
  );
}

let dir: string;
let pem: { cert: string; key: string };

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'sluice-examples-'));
  pem = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', pem.key, '-out', pem.cert], { stdio: 'ignore' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `*_file:` values → the throwaway PEM files (a key for key_file, the certificate for the others). */
function withThrowawayFiles(text: string): string {
  return text.replace(/\b([a-z_]*_file):[ \t]*("[^"\n]*"|'[^'\n]*'|(?:\$\{[^}\n]*\}|[^\s,}#])+)/g, (_, field: string) => `${field}: "${field.includes('key') ? pem.key : pem.cert}"`);
}

function check(text: string): void {
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, withThrowawayFiles(text));
  loadConfigFile(file, ENV); // throws a ConfigError listing every problem
}

const configs = shippedConfigs();

test('finds the shipped configs and the example blocks in them', () => {
  expect(configs).toEqual(expect.arrayContaining(['config/gateway.example.yaml', 'deploy/compose/gateway.yaml']));
  expect(configs.some((f) => f.startsWith('k8s/'))).toBe(true);
  const lines = readFileSync(repo('config/gateway.example.yaml'), 'utf8').split('\n');
  expect(variants(lines).length).toBeGreaterThanOrEqual(3);
});

test('the block finder: keys start a block, prose and blank comment lines end it, nested blocks are found inside', () => {
  const lines = [
    '# Durations: 500ms, 30s.', // prose (capitalised): not a block
    '# store:',
    '#   redis:',
    '#     url: redis://h:6379',
    '#     # tls:',
    '#     #   ca_file: ca.pem',
    '# log: { level: info }',
    '# or a cluster:',
    'listen:',
    '  port: 1',
    '  # tls: { cert_file: a.pem, key_file: b.pem }',
    '#',
    '# keys:',
    '#   - { name: a }',
  ];
  expect(exampleBlocks(lines)).toEqual([
    { first: 1, last: 6, column: 0 },
    { first: 10, last: 10, column: 2 },
    { first: 12, last: 13, column: 0 },
  ]);
  expect(variants(lines).map(([label]) => label)).toEqual([
    'line 2 (# store:)',
    'line 2 (# store:) > line 5 (# tls:)',
    'line 11 (# tls: { cert_file: a.pem, key_file: b.pem })',
    'line 13 (# keys:)',
  ]);
  expect(withThrowawayFiles('tls: { cert_file: a.pem, key_file: "b.pem" }')).toBe(`tls: { cert_file: "${pem.cert}", key_file: "${pem.key}" }`);
  // A path built from a variable with a default (`${DIR:-/etc/sluice}/a.pem`) is one value, braces and all.
  expect(withThrowawayFiles('tls: { cert_file: ${DIR:-/etc/x}/a.pem, key_file: b.pem }')).toBe(`tls: { cert_file: "${pem.cert}", key_file: "${pem.key}" }`);
});

describe.each(configs)('%s', (file) => {
  const text = readFileSync(repo(file), 'utf8');

  test('passes config check as shipped', () => check(text));

  const cases = variants(text.split('\n'));
  if (cases.length > 0) {
    test.each(cases)('passes config check with the example at %s uncommented', (_label, uncommented) => check(uncommented));
  }
});
