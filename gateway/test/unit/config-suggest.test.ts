import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { ConfigError, parseConfig } from '../../src/config/loader';
import { knownKeysAt } from '../../src/config/schema';
import { closestName, editDistance } from '../../src/config/suggest';

const FULL = readFileSync(join(__dirname, '../fixtures/config/good/full.yaml'), 'utf8');

function problems(text: string): string[] {
  try {
    parseConfig(text, {});
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected the config to be refused');
}

type Path = (string | number)[];

/** Every mapping of a parsed config whose keys the schema fixes, with its path. */
function fixedMappings(value: unknown, path: Path = []): { path: Path; mapping: Record<string, unknown> }[] {
  if (Array.isArray(value)) return value.flatMap((item, i) => fixedMappings(item, [...path, i]));
  if (typeof value !== 'object' || value === null) return [];
  const mapping = value as Record<string, unknown>;
  const own = knownKeysAt(path).length > 0 ? [{ path, mapping }] : [];
  return [...own, ...Object.entries(mapping).flatMap(([key, child]) => fixedMappings(child, [...path, key]))];
}

const formatPath = (path: Path) => path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');

describe('edit distance', () => {
  test.each([
    ['timout_ms', 'timeout_ms', 1],
    ['hots', 'host', 1], // a swap of neighbours is one edit
    ['port', 'port', 0],
    ['', 'abc', 3],
    ['kitten', 'sitting', 3],
  ])('%s → %s = %d', (a, b, d) => expect(editDistance(a, b)).toBe(d));

  test('suggests only what is close; case, _ and - do not count', () => {
    expect(closestName('Timeout-MS', ['timeout_ms', 'max_wait_ms'])).toBe('timeout_ms');
    expect(closestName('zzz', ['listen', 'admin', 'store'])).toBeUndefined();
    expect(closestName('completely_different', ['timeout_ms'])).toBeUndefined();
  });
});

describe('unknown keys name the closest known key, at every level of the config', () => {
  // Each fixed mapping of a full config gets a misspelt copy of each of its keys (one letter dropped):
  // the problem line names that key, at that path.
  const full = parse(FULL) as Record<string, unknown>;
  const cases = fixedMappings(full).flatMap(({ path, mapping }) =>
    Object.keys(mapping)
      .filter((key) => key.length > 3)
      .map((key) => ({ path, key, typo: key.slice(0, -2) + key.slice(-1) })),
  );

  test('the full fixture has fixed mappings at several depths', () => {
    expect(new Set(cases.map((c) => c.path.length)).size).toBeGreaterThanOrEqual(4);
  });

  test.each(cases.map((c) => [formatPath([...c.path, c.typo]), c]))('%s', (_label, { path, key, typo }) => {
    const config = parse(FULL) as Record<string, unknown>;
    let mapping: any = config;
    for (const segment of path) mapping = mapping[segment];
    mapping[typo] = mapping[key];
    delete mapping[key];
    const line = `${formatPath([...path, typo])}: unknown key '${typo}' (did you mean '${key}'?)`;
    expect(problems(stringify(config))).toContain(line);
  });

  test('a key close to nothing is named without a suggestion', () => {
    const config = parse(FULL) as { listen: Record<string, unknown> };
    config.listen.zzz = 1;
    expect(problems(stringify(config))).toContain("listen.zzz: unknown key 'zzz'");
  });
});
