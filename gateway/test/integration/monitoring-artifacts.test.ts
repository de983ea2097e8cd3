import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import { catalogue } from '../../src/errors/catalogue';
import { baseConfig, removeConfig, REPO_ROOT, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { send } from '../support/http';
import { freePort } from '../support/ports';
import {
  familyOf,
  GRAFANA_BUILTIN_VARIABLES,
  interpolateGrafanaVariables,
  metricNames,
  missingMetrics,
  scrapeTypes,
  templateVariableRefs,
  variableQueryExpr,
} from '../support/promql';
import { startUpstream, type TestUpstream } from '../support/upstream';

// The Grafana dashboard, its provisioning and the Prometheus config + alert rules under deploy/:
// their structure, and that every metric name their PromQL reads is exposed by a real gateway's
// /metrics. With promtool installed (Debian package `prometheus`), promtool also checks the rules,
// the config, the alert unit tests, the dashboard's PromQL and the live scrape; with the prometheus
// binary, a real Prometheus scrapes the gateway and runs every dashboard query and alert rule.

const GRAFANA = path.join(REPO_ROOT, 'deploy/grafana');
const PROMETHEUS = path.join(REPO_ROOT, 'deploy/prometheus');
const DASHBOARD_FILE = path.join(GRAFANA, 'sluice-dashboard.json');
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8'));
const promConfig = parse(readFileSync(path.join(PROMETHEUS, 'prometheus.yml'), 'utf8'));
const alertRules = parse(readFileSync(path.join(PROMETHEUS, 'alerts.yml'), 'utf8'));

interface Query {
  where: string;
  expr: string;
}

/** Every panel, the panels inside rows included. */
function allPanels(panels: any[] = dashboard.panels): any[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

/** Every PromQL the dashboard sends: panel targets, Prometheus annotations, and variable queries. */
function dashboardQueries(): Query[] {
  const queries: Query[] = [];
  for (const panel of allPanels()) {
    for (const target of panel.targets ?? []) queries.push({ where: `panel "${panel.title}" target ${target.refId}`, expr: target.expr });
  }
  for (const annotation of dashboard.annotations?.list ?? []) {
    if (annotation.expr) queries.push({ where: `annotation "${annotation.name}"`, expr: annotation.expr });
  }
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query') continue;
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query ?? variable.definition;
    const expr = variableQueryExpr(query);
    if (expr) queries.push({ where: `variable "${variable.name}"`, expr });
  }
  return queries;
}

const rules: any[] = alertRules.groups.flatMap((group: any) => group.rules);
const alertQueries: Query[] = rules.map((rule) => ({ where: `alert ${rule.alert}`, expr: rule.expr }));

/** The dashboard's variables, replaced as Grafana would before sending a query (all replicas selected). */
const variableValues = (rateInterval: string): Record<string, string> => ({
  __rate_interval: rateInterval,
  __interval: '15s',
  __range: '1h',
  ...Object.fromEntries(dashboard.templating.list.filter((v: any) => v.type !== 'datasource').map((v: any) => [v.name, '.+'])),
});

/** The path of an executable on PATH, or undefined. */
function which(command: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : undefined;
}
const promtool = which('promtool');
const prometheusBinary = which('prometheus');
const describeWithPromtool = promtool ? describe : describe.skip;
const describeWithPrometheus = prometheusBinary ? describe : describe.skip;
if (!promtool) console.log('promtool not found (apt-get install prometheus): running the structural and live-scrape checks only');
if (!prometheusBinary) console.log('prometheus not found (apt-get install prometheus): dashboard queries are not run against a real Prometheus');

function runPromtool(args: string[], options: { cwd?: string; input?: string } = {}) {
  const result = spawnSync(promtool!, args, { cwd: options.cwd ?? REPO_ROOT, input: options.input, encoding: 'utf8', timeout: 30_000 });
  return { code: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

// ---- the tokenizer, on its own -----------------------------------------------------------------

describe('metric names in PromQL (support/promql.ts)', () => {
  it('finds metrics and skips functions, keywords, label names, strings, ranges and variables', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (le, route) (rate(sluice_request_duration_seconds_bucket{job=~"$job",status!="x{y}"}[$__rate_interval])))',
      ),
    ).toEqual(['sluice_request_duration_seconds_bucket']);
    expect(metricNames('sum by (class) (label_replace(rate(a_total[5m]), "class", "${1}xx", "status", "([0-9]).."))')).toEqual(['a_total']);
    expect(
      metricNames('sum(rate(a_total[5m] offset 1h)) by (job) / on (job) group_left(instance) b > bool 0.5e3 unless c and Inf # d_total'),
    ).toEqual(['a_total', 'b', 'c']);
    expect(metricNames('(sum(rate(x[1m:10s])) or vector(0)) / ignoring(code) y_sum without_z')).toEqual(['x', 'y_sum', 'without_z']);
    expect(metricNames('max_over_time(job:requests:rate5m[[interval]]) * 1e-3')).toEqual(['job:requests:rate5m']);
  });

  it('reads the expression of a Grafana variable query', () => {
    expect(variableQueryExpr('label_values(sluice_requests_total{job=~"$job"}, instance)')).toBe('sluice_requests_total{job=~"$job"}');
    expect(variableQueryExpr('label_values(job)')).toBe('');
    expect(variableQueryExpr('query_result(topk(5, up))')).toBe('topk(5, up)');
  });

  it('leaves unknown variables alone when interpolating, like Grafana', () => {
    expect(interpolateGrafanaVariables('x{a=~"$job"}[$__rate_interval] "${1}xx"', { job: '.+', __rate_interval: '1m' })).toBe('x{a=~".+"}[1m] "${1}xx"');
  });

  it('maps histogram samples to their family and reports what a scrape lacks', () => {
    const types = scrapeTypes('# TYPE req_total counter\n# TYPE dur_seconds histogram\n# TYPE s summary\n# TYPE g gauge\n');
    expect(missingMetrics(['req_total', 'dur_seconds_bucket', 'dur_seconds_sum', 's_count', 'up'], types)).toEqual([]);
    // a counter has no _bucket, a gauge no _sum, a summary no _bucket; typos are typos
    expect(missingMetrics(['req_total_bucket', 'g_sum', 's_bucket', 'req_totl', 'dur_seconds_bucket'], types)).toEqual([
      'req_total_bucket',
      'g_sum',
      's_bucket',
      'req_totl',
    ]);
  });
});

// ---- the dashboard ---------------------------------------------------------------------------

describe('Grafana dashboard (deploy/grafana/sluice-dashboard.json)', () => {
  it('is an importable dashboard with a uid, a title and a recent schema', () => {
    expect(dashboard.uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
    expect(typeof dashboard.title).toBe('string');
    expect(dashboard.title.length).toBeGreaterThan(0);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.id ?? null).toBeNull(); // an id from another Grafana would clash on import
    // Provisioning does not substitute import inputs: no ${DS_...} may be left anywhere.
    expect(JSON.stringify(dashboard)).not.toMatch(/\$\{DS_/);
  });

  it('picks its Prometheus through a datasource variable, and filters by job and instance', () => {
    const variables = new Map<string, any>(dashboard.templating.list.map((v: any) => [v.name, v]));
    expect(variables.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of ['job', 'instance']) {
      expect(variables.get(name)).toMatchObject({ type: 'query', datasource: DATASOURCE });
    }
    expect(variableQueryExpr(variables.get('instance').definition)).toContain('$job');
  });

  it('gives every panel a title, a unique id, the datasource variable and queries with expressions', () => {
    const panels = allPanels();
    expect(panels.length).toBeGreaterThan(10);
    const ids = panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) {
      const label = `panel ${panel.id} "${panel.title}"`;
      expect({ label, title: typeof panel.title === 'string' && panel.title.trim() !== '' }).toEqual({ label, title: true });
      expect({ label, fits: panel.gridPos.x >= 0 && panel.gridPos.w > 0 && panel.gridPos.x + panel.gridPos.w <= 24 }).toEqual({ label, fits: true });
      if (panel.type === 'row') continue; // a row is a heading: no datasource, no queries
      expect({ label, datasource: panel.datasource }).toEqual({ label, datasource: DATASOURCE });
      expect({ label, targets: panel.targets?.length ?? 0 }).not.toEqual({ label, targets: 0 });
      const refIds = panel.targets.map((target: any) => target.refId);
      expect({ label, uniqueRefIds: new Set(refIds).size }).toEqual({ label, uniqueRefIds: refIds.length });
      for (const target of panel.targets) {
        expect({ label, datasource: target.datasource }).toEqual({ label, datasource: DATASOURCE });
        expect({ label, expr: typeof target.expr === 'string' && target.expr.trim() !== '' }).toEqual({ label, expr: true });
      }
    }
    for (const annotation of dashboard.annotations.list) {
      if (annotation.expr) expect(annotation.datasource).toEqual(DATASOURCE);
    }
  });

  it('references only template variables it defines', () => {
    const defined = new Set<string>([...dashboard.templating.list.map((v: any) => v.name), ...GRAFANA_BUILTIN_VARIABLES]);
    const undefinedRefs = dashboardQueries().flatMap(({ where, expr }) =>
      // strings are dropped first: "${1}xx" in label_replace() is a regex group, not a variable
      templateVariableRefs(expr.replace(/"(?:[^"\\]|\\.)*"/g, '""'))
        .filter((name) => !defined.has(name))
        .map((name) => `${where}: $${name}`),
    );
    expect(undefinedRefs).toEqual([]);
  });

  it('has the panels the observability issue asks for', () => {
    const panels = allPanels().filter((panel) => panel.type !== 'row');
    const exprsOf = (panel: any): string[] => panel.targets.map((target: any) => target.expr);
    const panelUsing = (metric: string, test: (expr: string) => boolean = () => true) =>
      panels.find((panel) => exprsOf(panel).some((expr) => metricNames(expr).includes(metric) && test(expr)));

    // request rate by status class: status folded into 2xx/4xx/5xx
    expect(panelUsing('sluice_requests_total', (e) => /label_replace\(/.test(e) && e.includes('"status"') && /sum by \(class\)/.test(e))).toBeDefined();
    expect(panelUsing('sluice_errors_total', (e) => /by \([^)]*\bcode\b/.test(e))).toBeDefined();
    // p50/p95/p99 of the gateway and of upstreams, in one panel each
    for (const bucket of ['sluice_request_duration_seconds_bucket', 'sluice_upstream_duration_seconds_bucket']) {
      const panel = panelUsing(bucket);
      expect(panel).toBeDefined();
      const quantiles = exprsOf(panel).map((expr) => /histogram_quantile\((0\.\d+)/.exec(expr)?.[1]);
      expect(quantiles).toEqual(expect.arrayContaining(['0.5', '0.95', '0.99']));
    }
    expect(panelUsing('sluice_ratelimit_decisions_total', (e) => e.includes('outcome="limited"') && /by \(tier\)/.test(e))).toBeDefined();
    expect(panelUsing('sluice_redis_duration_seconds_bucket', (e) => /histogram_quantile\(0\.99/.test(e) && /\boperation\b/.test(e))).toBeDefined();
    expect(panelUsing('sluice_upstream_errors_total', (e) => /by \([^)]*\bupstream\b/.test(e))).toBeDefined();
    expect(panelUsing('sluice_key_cache_lookups_total', (e) => e.includes('result="hit"') && e.includes('/'))).toBeDefined();
    for (const metric of [
      'sluice_redis_errors_total',
      'sluice_ratelimit_fallback_active',
      'sluice_upstream_breaker_state',
      'sluice_in_flight_requests',
      'sluice_config_reloads_total',
      'process_resident_memory_bytes',
    ]) {
      expect({ metric, panel: panelUsing(metric)?.title ?? null }).not.toEqual({ metric, panel: null });
    }
    expect(panels.some((panel) => exprsOf(panel).some((expr) => metricNames(expr).some((name) => name.startsWith('nodejs_eventloop_lag'))))).toBe(true);
    // the process metrics sit under a row of their own
    expect(allPanels().some((panel) => panel.type === 'row' && /process/i.test(panel.title))).toBe(true);
  });
});

// ---- provisioning ----------------------------------------------------------------------------

describe('Grafana provisioning (deploy/grafana/provisioning)', () => {
  const datasources = parse(readFileSync(path.join(GRAFANA, 'provisioning/datasources/prometheus.yml'), 'utf8'));
  const providers = parse(readFileSync(path.join(GRAFANA, 'provisioning/dashboards/sluice.yml'), 'utf8'));
  const readme = readFileSync(path.join(GRAFANA, 'README.md'), 'utf8');
  // compose volume lines of the README: `- ./HOST:CONTAINER[:ro]`
  const mounts = [...readme.matchAll(/^\s*-\s*\.\/([^\s:]+):(\/[^\s:]+)(?::ro)?\s*$/gm)].map((m) => ({ host: m[1], container: m[2] }));

  it('provides the compose Prometheus as the default datasource, of the type the dashboard variable asks for', () => {
    expect(datasources.apiVersion).toBe(1);
    const prometheus = datasources.datasources.find((ds: any) => ds.type === 'prometheus');
    expect(prometheus).toMatchObject({ url: 'http://prometheus:9090', access: 'proxy', isDefault: true });
    const variable = dashboard.templating.list.find((v: any) => v.type === 'datasource');
    expect(variable.query).toBe(prometheus.type);
  });

  it('loads dashboards from a directory where the README mounts deploy/grafana/sluice-dashboard.json', () => {
    expect(providers.apiVersion).toBe(1);
    const provider = providers.providers.find((p: any) => p.type === 'file');
    expect(provider.options.path).toBe('/var/lib/grafana/dashboards');
    const dashboardMount = mounts.find((m) => path.posix.dirname(m.container) === provider.options.path);
    expect(dashboardMount).toEqual({ host: 'deploy/grafana/sluice-dashboard.json', container: '/var/lib/grafana/dashboards/sluice-dashboard.json' });
    expect(existsSync(path.join(REPO_ROOT, dashboardMount!.host))).toBe(true);
    expect(path.posix.extname(dashboardMount!.container)).toBe('.json'); // the provider only reads *.json
  });

  it('mounts the provisioning directory (both files inside it) where Grafana reads it', () => {
    const provisioning = mounts.find((m) => m.container === '/etc/grafana/provisioning');
    expect(provisioning?.host).toBe('deploy/grafana/provisioning');
    for (const file of ['datasources/prometheus.yml', 'dashboards/sluice.yml']) {
      expect(existsSync(path.join(REPO_ROOT, provisioning!.host, file))).toBe(true);
    }
  });
});

// ---- Prometheus ------------------------------------------------------------------------------

describe('Prometheus config and alert rules (deploy/prometheus)', () => {
  it('scrapes gateway-1..3 on the admin port every 15s and loads alerts.yml', () => {
    const job = promConfig.scrape_configs.find((c: any) => c.job_name === 'sluice');
    expect(job.scrape_interval ?? promConfig.global.scrape_interval).toBe('15s');
    expect(job.metrics_path ?? '/metrics').toBe('/metrics');
    expect(job.static_configs.flatMap((c: any) => c.targets).sort()).toEqual(['gateway-1:9090', 'gateway-2:9090', 'gateway-3:9090']);
    expect(promConfig.rule_files).toEqual(['alerts.yml']);
    // relative rule files are resolved against the config file's directory
    for (const file of promConfig.rule_files) expect(existsSync(path.join(PROMETHEUS, file))).toBe(true);
  });

  it('gives every alert a for, a severity, a summary and a description', () => {
    expect(rules.length).toBeGreaterThanOrEqual(7);
    const names = rules.map((rule) => rule.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const rule of rules) {
      expect({ alert: rule.alert, expr: typeof rule.expr, for: /^\d+[smh]$/.test(String(rule.for)) }).toEqual({ alert: rule.alert, expr: 'string', for: true });
      expect(['warning', 'critical']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary?.length).toBeGreaterThan(0);
      expect(rule.annotations?.description?.length).toBeGreaterThan(0);
    }
  });

  it('covers 5xx ratio, fallback, breaker, p99, Redis errors, failed reloads and a replica down', () => {
    const byMetric = (metric: string, test: (rule: any) => boolean) => rules.find((rule) => metricNames(rule.expr).includes(metric) && test(rule));
    const compact = (expr: string) => expr.replace(/\s+/g, ' ');
    expect(byMetric('sluice_requests_total', (r) => r.expr.includes('5..') && /\/[\s\S]*> 0\.05/.test(r.expr) && /\[5m\]/.test(r.expr))).toBeDefined();
    expect(byMetric('sluice_ratelimit_fallback_active', (r) => /== 1/.test(r.expr) && r.for === '1m')).toBeDefined();
    expect(byMetric('sluice_upstream_breaker_state', (r) => /(== 1|>= 1)/.test(r.expr) && r.for === '1m')).toBeDefined();
    expect(byMetric('sluice_request_duration_seconds_bucket', (r) => /histogram_quantile\(0\.99/.test(r.expr) && /> 0\.5\b/.test(r.expr) && r.for === '5m')).toBeDefined();
    expect(byMetric('sluice_redis_errors_total', (r) => /rate\(sluice_redis_errors_total\[5m\]\)\) > 0/.test(compact(r.expr)) && r.for === '5m')).toBeDefined();
    expect(byMetric('sluice_config_reloads_total', (r) => /increase\(sluice_config_reloads_total\{result="failed"\}\[10m\]\)\) > 0/.test(compact(r.expr)))).toBeDefined();
    expect(byMetric('up', (r) => /== 0/.test(r.expr))).toBeDefined();
  });

  it('has a promtool unit test in alerts.test.yml that makes every alert fire', () => {
    const unitTests = parse(readFileSync(path.join(PROMETHEUS, 'alerts.test.yml'), 'utf8'));
    expect(unitTests.rule_files).toEqual(['alerts.yml']);
    const firing = new Set(
      unitTests.tests.flatMap((t: any) => t.alert_rule_test.filter((a: any) => a.exp_alerts.length > 0).map((a: any) => a.alertname)),
    );
    expect(rules.map((rule) => rule.alert).filter((name) => !firing.has(name))).toEqual([]);
  });
});

// ---- a live gateway --------------------------------------------------------------------------

describe('against the /metrics of a running gateway', () => {
  const KEY = 'sk_test_monitoring_0123456789ab';
  let upstream: TestUpstream;
  let gateway: TestGateway;
  let configFile: string;
  let scrape: string;
  let types: Map<string, string>;

  beforeAll(async () => {
    upstream = await startUpstream();
    configFile = writeConfig(
      baseConfig({
        tiers: { free: { limits: [{ requests: 1000, per: '1m' }], scopes: ['users:read'] } },
        upstreams: { app: { targets: [upstream.url], timeout_ms: 5000 } },
        routes: [{ name: 'users', match: { path_prefix: '/v1/users', methods: ['GET'] }, upstream: 'app', scopes: ['users:read'] }],
        keys: [{ name: 'monitoring', tier: 'free', key: KEY }],
        // as in deploy/compose/gateway.yaml: every series carries the replica's own `instance` label
        metrics: { default_labels: { instance: 'gateway-under-test' } },
      }),
    );
    gateway = await startGateway(configFile);
    // a 200 through the upstream, a 401 and a 404, so the labelled series have samples
    expect((await send(`${gateway.url}/v1/users/ok`, { headers: { 'x-api-key': KEY } })).status).toBe(200);
    expect((await send(`${gateway.url}/v1/users/ok`)).status).toBe(401);
    expect((await send(`${gateway.url}/nowhere`, { headers: { 'x-api-key': KEY } })).status).toBe(404);
    const res = await send(`${gateway.adminUrl}/metrics`);
    expect(res.status).toBe(200);
    scrape = res.text;
    types = scrapeTypes(scrape);
  });

  afterAll(async () => {
    await gateway?.stop();
    await upstream?.close();
    if (configFile) removeConfig(configFile);
  });

  it('serves a scrape with the requests just made', () => {
    expect(scrape).toMatch(/^sluice_requests_total\{route="users",method="GET",status="200",instance="gateway-under-test"\} 1$/m);
    expect(scrape).toMatch(/^sluice_errors_total\{code="missing_api_key",status="401",instance="gateway-under-test"\} 1$/m);
    expect(scrape).toMatch(/^sluice_errors_total\{code="route_not_found",status="404",instance="gateway-under-test"\} 1$/m);
  });

  it('exposes every metric that the dashboard and the alert rules query', () => {
    const queries = [...dashboardQueries(), ...alertQueries];
    const used = queries.flatMap(({ expr }) => metricNames(expr));
    expect(used.length).toBeGreaterThan(20);
    const missing = queries.flatMap(({ where, expr }) => missingMetrics(metricNames(expr), types).map((name) => `${where}: ${name}`));
    expect(missing).toEqual([]);
  });

  it('reports a misspelled metric name as missing (the check above can fail)', () => {
    const sample = 'sum by (status) (rate(sluice_request_total{route="users"}[5m])) / sum(rate(sluice_requests_total[5m]))';
    expect(missingMetrics(metricNames(sample), types)).toEqual(['sluice_request_total']);
    expect(missingMetrics(metricNames('histogram_quantile(0.99, sum by (le) (rate(sluice_request_duration_bucket[5m])))'), types)).toEqual([
      'sluice_request_duration_bucket',
    ]);
  });

  it('puts every sluice_* metric of the registry on the dashboard', () => {
    const onDashboard = new Set(dashboardQueries().flatMap(({ expr }) => metricNames(expr).map((name) => familyOf(name, types))));
    const sluiceFamilies = [...types.keys()].filter((name) => name.startsWith('sluice_'));
    expect(sluiceFamilies.length).toBeGreaterThanOrEqual(15);
    expect(sluiceFamilies.filter((family) => !onDashboard.has(family))).toEqual([]);
  });

  (promtool ? it : it.skip)('passes promtool check metrics (lint warnings on prom-client defaults allowed, none on sluice_*)', () => {
    const { code, output } = runPromtool(['check', 'metrics'], { input: scrape });
    // 0: clean; 3: lint problems only (prom-client's nodejs_active_*_total gauges); 1: the exposition does not parse
    expect({ code: [0, 3].includes(code ?? -1), output }).toEqual({ code: true, output });
    const problems = output.split('\n').filter((line) => line.trim() !== '');
    expect(problems.filter((line) => !/^[a-zA-Z_:][\w:]* /.test(line) || line.startsWith('sluice_'))).toEqual([]);
  });

  // A real Prometheus scrapes this gateway each second, loads alerts.yml, and runs every dashboard query.
  describeWithPrometheus('a real Prometheus scraping it', () => {
    let dir: string;
    let prometheus: ChildProcess;
    let api: string;
    const log: string[] = [];

    const query = async (expr: string) => {
      const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`);
      return (await res.json()) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
    };

    beforeAll(async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'sluice-prometheus-'));
      const port = await freePort();
      api = `http://127.0.0.1:${port}`;
      // deploy/prometheus/prometheus.yml with this gateway as the only target, faster intervals and
      // alerts.yml by absolute path; everything else of the sluice job (relabelling…) as deployed
      const job = promConfig.scrape_configs.find((c: any) => c.job_name === 'sluice');
      writeFileSync(
        path.join(dir, 'prometheus.yml'),
        stringify({
          ...promConfig,
          global: { ...promConfig.global, scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
          rule_files: promConfig.rule_files.map((file: string) => path.join(PROMETHEUS, file)),
          scrape_configs: [{ ...job, scrape_interval: '1s', scrape_timeout: '1s', static_configs: [{ targets: [`127.0.0.1:${gateway.adminPort}`] }] }],
        }),
      );
      prometheus = spawn(
        prometheusBinary!,
        [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      process.once('exit', () => prometheus.kill('SIGKILL')); // never outlive a crashed test run
      prometheus.stdout!.on('data', (d: Buffer) => log.push(d.toString()));
      prometheus.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
      // ready once it has at least 3 scrapes of the gateway (rate() needs two samples in its window)
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          const samples = await query('count_over_time(up{job="sluice"}[1m])');
          if (Number(samples.data?.result?.[0]?.value?.[1] ?? 0) >= 3) break;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline || prometheus.exitCode !== null) throw new Error(`prometheus did not scrape the gateway:\n${log.join('')}`);
        await delay(250);
      }
    });

    afterAll(async () => {
      if (prometheus && prometheus.exitCode === null) {
        const exited = new Promise((resolve) => prometheus.once('exit', resolve));
        prometheus.kill('SIGTERM');
        await exited;
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('answers every dashboard query without an error', async () => {
      const values = variableValues('30s');
      const failures: string[] = [];
      for (const { where, expr } of dashboardQueries()) {
        const answer = await query(interpolateGrafanaVariables(expr, values));
        if (answer.status !== 'success') failures.push(`${where}: ${answer.error}`);
      }
      expect(failures).toEqual([]);
    });

    it('gets status classes, envelope codes and replicas out of the dashboard queries', async () => {
      const values = variableValues('30s');
      const resultOf = async (title: string, label: string) => {
        const panel = allPanels().find((p) => p.title === title);
        const answer = await query(interpolateGrafanaVariables(panel.targets[0].expr, values));
        return answer.data.result.map((r) => r.metric[label]).sort();
      };
      // Series with known labels start at 0, so the panels show the 5xx class and every code (the
      // requests were made before Prometheus started: every rate is 0 here, only presence counts).
      expect(await resultOf('Request rate by status class', 'class')).toEqual(['2xx', '4xx', '5xx']);
      expect(await resultOf('Error envelopes by code', 'code')).toEqual(Object.keys(catalogue).sort());
      expect(await resultOf('Breaker state by target', 'target')).toEqual([upstream.url]);
      const instances = await query(interpolateGrafanaVariables(variableQueryExpr(dashboard.templating.list.find((v: any) => v.name === 'instance').definition), values));
      // `instance` is the scrape target (what `up` and the alerts know), not the replica's own label
      expect([...new Set(instances.data.result.map((r) => r.metric.instance))]).toEqual([`127.0.0.1:${gateway.adminPort}`]);
      expect(instances.data.result.filter((r) => 'exported_instance' in r.metric)).toEqual([]);
    });

    it('evaluates every alert rule without an error, and none fires on a healthy gateway', async () => {
      let groups: any[] = [];
      const deadline = Date.now() + 10_000;
      // rules are evaluated each second; wait until each has been evaluated once
      do {
        await delay(500);
        const res = await fetch(`${api}/api/v1/rules?type=alert`);
        groups = ((await res.json()) as any).data.groups;
      } while (groups.flatMap((g) => g.rules).some((r: any) => !r.lastEvaluation || r.lastEvaluation.startsWith('0001')) && Date.now() < deadline);
      const loaded = groups.flatMap((g) => g.rules);
      expect(loaded.map((r: any) => r.name).sort()).toEqual(rules.map((rule) => rule.alert).sort());
      expect(loaded.filter((r: any) => r.health !== 'ok').map((r: any) => `${r.name}: ${r.lastError}`)).toEqual([]);
      expect(loaded.filter((r: any) => r.state !== 'inactive').map((r: any) => r.name)).toEqual([]);
    });
  });
});

// ---- promtool --------------------------------------------------------------------------------

describeWithPromtool('promtool', () => {
  it('accepts the alert rules', () => {
    const { code, output } = runPromtool(['check', 'rules', 'alerts.yml'], { cwd: PROMETHEUS });
    expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining(`SUCCESS: ${rules.length} rules found`) });
  });

  it('accepts the Prometheus config (from its directory, so alerts.yml resolves)', () => {
    const { code, output } = runPromtool(['check', 'config', 'prometheus.yml'], { cwd: PROMETHEUS });
    expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining('SUCCESS: 1 rule files found') });
  });

  it('passes the alert unit tests (alerts.test.yml)', () => {
    const { code, output } = runPromtool(['test', 'rules', 'alerts.test.yml'], { cwd: PROMETHEUS });
    expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining('SUCCESS') });
  });

  describe('parses the dashboard PromQL (as recording rules, variables replaced)', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'sluice-promql-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const check = (exprs: string[]) => {
      const file = path.join(dir, `rules-${exprs.length}.yml`);
      const values = variableValues('1m');
      writeFileSync(
        file,
        stringify({ groups: [{ name: 'dashboard', rules: exprs.map((expr, i) => ({ record: `dashboard:query_${i}`, expr: interpolateGrafanaVariables(expr, values) })) }] }),
      );
      return runPromtool(['check', 'rules', '--lint=none', file]);
    };

    it('every query of the dashboard', () => {
      const queries = dashboardQueries();
      const { code, output } = check(queries.map((q) => q.expr));
      expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining(`SUCCESS: ${queries.length} rules found`) });
    });

    it('and fails on a broken one (the check can fail)', () => {
      const { code, output } = check(['sum by (route (rate(sluice_requests_total[$__rate_interval]))']);
      expect(code).not.toBe(0);
      expect(output).toMatch(/parse error|unexpected/i);
    });
  });
});
