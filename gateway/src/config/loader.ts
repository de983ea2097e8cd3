// YAML text → interpolated → validated → deep-frozen Config, or one ConfigError listing every problem
// as `path: message` (`tiers.pro.limits[1].per: expected a duration like 1m`).
import { readFileSync } from 'node:fs';
import { isScalar, LineCounter, parseAllDocuments, visit, type Document, type YAMLError } from 'yaml';
import type { z } from 'zod';
import { configSchema, knownKeysAt, type Config } from './schema';
import { closestName } from './suggest';

export type { Config } from './schema';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';

  constructor(
    readonly problems: string[],
    readonly file?: string,
  ) {
    super((file === undefined ? '' : `${file}:\n`) + problems.join('\n'));
  }
}

/** Parses and validates config text. `${VAR}` and `${VAR:-default}` are read from `env`. */
export function parseConfig(text: string, env: NodeJS.ProcessEnv = process.env): Config {
  return parseConfigText(text, env, undefined);
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : `cannot read the file (${code ?? String(error)})`;
    throw new ConfigError([`<root>: ${reason}`], file);
  }
  return parseConfigText(text, env, file);
}

type Path = (string | number)[];
type Problem = { path: Path; message: string };

function parseConfigText(text: string, env: NodeJS.ProcessEnv, file: string | undefined): Config {
  const yaml = parseYaml(text);
  if ('problems' in yaml) throw new ConfigError(yaml.problems, file);

  const interpolation = interpolate(yaml.value, env);
  const result = configSchema.safeParse(interpolation.value, { error: defaultMessage });
  // A value left empty by a missing variable fails the schema too: report only the missing variable.
  const schemaProblems = result.success
    ? []
    : result.error.issues.flatMap(issueProblems).filter((p) => !interpolation.problems.some((i) => isUnder(p.path, i.path)));
  const problems = [...interpolation.problems, ...schemaProblems];

  if (problems.length > 0 || !result.success) {
    const lines = problems.map((p) => `${formatPath(p.path)}: ${redact(p.message, interpolation.fromEnv)}`);
    throw new ConfigError([...new Set(lines)], file);
  }
  return deepFreeze(result.data);
}

// ---------------------------------------------------------------------------------------------
// YAML

function parseYaml(text: string): { value: unknown } | { problems: string[] } {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `line ${line}, column ${col}`;
  };
  if (docs.length === 0) return { problems: ['<root>: the config is empty'] };
  if (docs.length > 1) {
    return { problems: [`<root>: ${at(docs[1].range[0])}: expected a single YAML document`] };
  }
  const [doc] = docs;
  // Warnings (e.g. unknown tags) are refused too: a config should mean exactly what it says.
  // Only the first is reported: after a syntax error the rest are mostly its echoes.
  const [first]: YAMLError[] = [...doc.errors, ...doc.warnings];
  if (first !== undefined) return { problems: [`<root>: ${at(first.pos[0])}: ${describeYamlError(first, doc, text)}`] };
  try {
    const value: unknown = doc.toJS(); // aliases are capped by the yaml library (maxAliasCount)
    return value === null || value === undefined ? { problems: ['<root>: the config is empty'] } : { value };
  } catch (error) {
    return { problems: [`<root>: ${(error as Error).message}`] };
  }
}

function describeYamlError(error: YAMLError, doc: Document, text: string): string {
  if (error.code === 'DUPLICATE_KEY') {
    const key = keyStartingAt(doc, error.pos[0]);
    return key === undefined ? 'duplicate key' : `duplicate key ${JSON.stringify(key)}`;
  }
  // `{ token: ${X} }`: in flow collections `{` ends a plain scalar, so the reference must be quoted.
  if (text.startsWith('${', error.pos[0] - 1)) return `${error.message}: quote \${...} references inside { } and [ ]`;
  return error.message.split('\n')[0];
}

function keyStartingAt(doc: Document, offset: number): string | undefined {
  let key: string | undefined;
  visit(doc, {
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.range?.[0] === offset) {
        key = String(pair.key.value);
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return key;
}

// ---------------------------------------------------------------------------------------------
// ${VAR} interpolation, inside string scalars of the parsed tree: an env value can never add YAML
// structure. `$${` is a literal `${`.

const REFERENCE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{/g;

type Interpolation = {
  value: unknown;
  problems: Problem[];
  /** Interpolated strings that contain an environment value → their text as written in the file. */
  fromEnv: Map<string, string>;
};

function interpolate(tree: unknown, env: NodeJS.ProcessEnv): Interpolation {
  const result: Interpolation = { value: undefined, problems: [], fromEnv: new Map() };

  const interpolateString = (text: string, path: Path): string => {
    let usedEnv = false;
    const resolved = text.replace(REFERENCE, (whole, variable: string | undefined, fallback: string | undefined) => {
      if (whole === '$${') return '${';
      if (variable === undefined) {
        result.problems.push({ path, message: 'malformed ${...} reference (write $${ for a literal ${)' });
        return '';
      }
      const value = env[variable];
      if (value !== undefined && (value !== '' || fallback === undefined)) {
        usedEnv = true;
        return value;
      }
      if (fallback !== undefined) return fallback; // like the shell, :- also covers an empty variable
      result.problems.push({ path, message: `environment variable ${variable} is not set` });
      return '';
    });
    if (usedEnv && resolved !== '' && !result.fromEnv.has(resolved)) result.fromEnv.set(resolved, text);
    return resolved;
  };

  const walk = (value: unknown, path: Path): unknown => {
    if (typeof value === 'string') return interpolateString(value, path);
    if (Array.isArray(value)) return value.map((item, i) => walk(item, [...path, i]));
    if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      // Object.fromEntries defines own properties, so a `__proto__` key stays a plain (unknown) key.
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, walk(item, [...path, key])]));
    }
    return value;
  };

  result.value = walk(tree, []);
  return result;
}

/**
 * Problem messages quote values as JSON strings (`unknown upstream "x"`). A quoted value that came
 * from the environment is replaced by its text in the file (`"${UPSTREAM}"`), so secrets never leak.
 */
function redact(message: string, fromEnv: Map<string, string>): string {
  let out = message;
  for (const [resolved, written] of fromEnv) out = out.split(JSON.stringify(resolved)).join(JSON.stringify(written));
  return out;
}

// ---------------------------------------------------------------------------------------------
// zod issues → problems

/** Wording for issues whose schema did not give its own message. */
function defaultMessage(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'required';
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map(String).join(', ')}`;
    case 'too_small':
      return issue.origin === 'array' ? `expected at least ${issue.minimum} item(s)` : `expected at least ${issue.minimum}`;
    case 'too_big':
      return issue.origin === 'array' ? `expected at most ${issue.maximum} item(s)` : `expected at most ${issue.maximum}`;
    default:
      return undefined;
  }
}

const TYPE_NAMES: Record<string, string> = {
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
};

function issueProblems(issue: z.core.$ZodIssue): Problem[] {
  const path = issue.path.map((segment) => (typeof segment === 'number' ? segment : String(segment)));
  if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => ({ path: [...path, key], message: unknownKeyMessage(key, path) }));
  // A record key (tier or upstream name) that fails its own schema: report the inner reason.
  if (issue.code === 'invalid_key') return [{ path, message: issue.issues[0]?.message ?? issue.message }];
  return [{ path, message: issue.message }];
}

/** `unknown key 'timout_ms' (did you mean 'timeout_ms'?)`, the suggestion taken from the schema's keys at that level. */
function unknownKeyMessage(key: string, path: Path): string {
  const known = knownKeysAt(path);
  const suggestion = closestName(key, known);
  return suggestion === undefined ? `unknown key '${key}'` : `unknown key '${key}' (did you mean '${suggestion}'?)`;
}

function isUnder(path: Path, prefix: Path): boolean {
  return prefix.length <= path.length && prefix.every((segment, i) => path[i] === segment);
}

/** `['tiers', 'pro', 'limits', 1, 'per']` → `tiers.pro.limits[1].per`; `[]` → `<root>`. */
function formatPath(path: Path): string {
  if (path.length === 0) return '<root>';
  return path
    .map((segment, i) => {
      if (typeof segment === 'number') return `[${segment}]`;
      if (/^[A-Za-z0-9_-]+$/.test(segment)) return i === 0 ? segment : `.${segment}`;
      return `[${JSON.stringify(segment)}]`;
    })
    .join('');
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
