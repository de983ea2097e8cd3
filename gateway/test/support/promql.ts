/**
 * Just enough PromQL (and Grafana templating) understanding for the monitoring-artifacts test:
 * which metric names does an expression read, and does a /metrics scrape expose them?
 *
 * This is not a parser. It removes everything that can hold an identifier that is NOT a metric
 * name, then keeps the identifiers that are left and are neither functions nor keywords.
 * `promtool check rules` (when installed) is what proves that the expressions really parse.
 */

/**
 * Words of the PromQL grammar that look like identifiers but never name a metric: binary and set
 * operators, grouping and modifier keywords, and number literals. (Functions and aggregations need
 * no list: they are always followed by `(`, see below.) Compared lower-cased, as PromQL does.
 */
export const PROMQL_KEYWORDS = new Set([
  'and', 'or', 'unless', 'atan2', // binary / set operators written as words
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', // grouping and vector matching
  'bool', 'offset', // comparison modifier, offset modifier
  'inf', 'nan', // number literals
]);

/** Grafana's global variables that the dashboard may use inside ranges (`[$__rate_interval]`). */
export const GRAFANA_BUILTIN_VARIABLES = new Set(['__rate_interval', '__interval', '__interval_ms', '__range', '__range_s', '__range_ms']);

/** The names of Grafana template variables referenced as `$name`, `${name}`, `${name:format}` or `[[name]]`. */
export function templateVariableRefs(text: string): string[] {
  const names = new Set<string>();
  for (const match of text.matchAll(/\$\{(\w+)(?:[.:][^}]*)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]/g)) {
    names.add(match[1] ?? match[2] ?? match[3]);
  }
  return [...names];
}

/**
 * Replaces Grafana variables the way Grafana does before a query is sent: known ones get a value,
 * unknown ones stay as they are (so the `${1}` of a label_replace() replacement string survives).
 */
export function interpolateGrafanaVariables(text: string, values: Record<string, string>): string {
  return text.replace(/\$\{(\w+)(?:[.:][^}]*)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]/g, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    return Object.hasOwn(values, name) ? values[name] : whole;
  });
}

/**
 * The metric names an expression reads, in order of first appearance, without duplicates.
 *
 * Step by step (the order matters: each step may only run once the previous one removed what
 * could confuse it):
 *  1. string literals ("…", '…', `…`) go first: they may hold anything (label values, regexes,
 *     label_replace() arguments like "${1}xx", even `{`, `#` or `)`);
 *  2. `# comments` to the end of the line;
 *  3. Grafana variables ($job, ${instance}, [[var]], $__rate_interval) — before step 4, because
 *     `[[var]]` looks like a range;
 *  4. `[…]` range and subquery selectors (`[5m]`, `[1h:30s]`): durations only;
 *  5. `{…}` label matchers: label names and (already removed) values only; after step 1 no `}`
 *     can hide inside a value, so a flat match is enough;
 *  6. grouping and vector-matching clauses, `by (…)`, `without (…)`, `on (…)`, `ignoring (…)`,
 *     `group_left (…)`, `group_right (…)`: their parentheses hold label names, not metrics;
 *  7. then every remaining token is either a number (`0.99`, `1e3`, `5m` after `offset`) — skipped —
 *     or an identifier; an identifier is a metric name unless the next non-blank character is `(`
 *     (a function or aggregation: rate, sum, histogram_quantile, vector, …) or it is a keyword.
 */
export function metricNames(expr: string): string[] {
  let text = expr;
  text = text.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' "" '); // 1
  text = text.replace(/#[^\n]*/g, ' '); // 2
  text = text.replace(/\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]/g, ' '); // 3
  text = text.replace(/\[[^\]]*\]/g, ' '); // 4
  text = text.replace(/\{[^}]*\}/g, ' '); // 5
  text = text.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' '); // 6

  const names: string[] = [];
  // 7: numbers first (a digit or `.digit`, with whatever letters follow: 1e3, 0x1f, 5m, 1h30m), else identifiers.
  const token = /(\d[\w.]*|\.\d[\w.]*)|([A-Za-z_:][\w:]*)/g;
  for (let match = token.exec(text); match; match = token.exec(text)) {
    const identifier = match[2];
    if (identifier === undefined) continue; // a number or duration
    const rest = text.slice(token.lastIndex);
    if (/^\s*\(/.test(rest)) continue; // a function or aggregation call
    if (PROMQL_KEYWORDS.has(identifier.toLowerCase())) continue;
    if (!names.includes(identifier)) names.push(identifier);
  }
  return names;
}

/**
 * The expression inside a Grafana Prometheus variable query: `label_values(EXPR, label)` →
 * EXPR (the trailing label name is not a metric), `label_values(label)` → nothing,
 * `query_result(EXPR)` → EXPR, `metrics(regex)` / `label_names()` → nothing; anything else is PromQL.
 */
export function variableQueryExpr(query: string): string {
  const q = query.trim();
  let m = /^label_values\(\s*(.*),\s*\w+\s*\)$/s.exec(q);
  if (m) return m[1];
  if (/^label_values\(\s*\w+\s*\)$/.test(q) || /^(?:metrics|label_names)\(/.test(q)) return '';
  m = /^query_result\((.*)\)$/s.exec(q);
  return m ? m[1] : q;
}

/** `# TYPE name type` lines of a Prometheus text exposition: metric family → type. */
export function scrapeTypes(exposition: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const match of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(match[1], match[2]);
  return types;
}

/**
 * The family a sample name belongs to: the name itself if it has a `# TYPE` line, else the base name
 * of a histogram (`_bucket`, `_sum`, `_count`) or summary (`_sum`, `_count`) sample; undefined if none.
 */
export function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const [suffix, kinds] of [
    ['_bucket', ['histogram']],
    ['_sum', ['histogram', 'summary']],
    ['_count', ['histogram', 'summary']],
  ] as const) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    if ((kinds as readonly string[]).includes(types.get(base) ?? '')) return base;
  }
  return undefined;
}

/** Metric names that are neither in the scrape nor in `ignore` (e.g. `up`, made by Prometheus itself). */
export function missingMetrics(names: Iterable<string>, types: Map<string, string>, ignore: ReadonlySet<string> = new Set(['up'])): string[] {
  return [...new Set(names)].filter((name) => !ignore.has(name) && familyOf(name, types) === undefined);
}
