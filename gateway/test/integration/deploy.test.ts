import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfigFile } from '../../src/config/loader';
import { REPO_ROOT, runCli, startGateway } from '../support/gateway';
import { send } from '../support/http';
import { freePort } from '../support/ports';
import { startRedis, type TestRedis } from '../support/redis';

// The deploy artifacts, checked without Docker or a cluster: they parse, agree with each other and
// with the gateway's config, and the packaged gateway starts with the image's own command.

const repo = (...parts: string[]) => path.join(REPO_ROOT, ...parts);
const ENV = { ...process.env, REDIS_URL: 'redis://127.0.0.1:6379/0', SLUICE_ADMIN_TOKEN: 'a'.repeat(32), HOSTNAME: 'test' };

function filesUnder(dir: string, pattern: RegExp): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? filesUnder(full, pattern) : pattern.test(name) ? [full] : [];
  });
}

function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

describe('every artifact parses', () => {
  const yamlFiles = [...filesUnder(repo('k8s'), /\.ya?ml$/), ...filesUnder(repo('deploy'), /\.ya?ml$/), repo('docker-compose.yml')];
  it.each(yamlFiles.map((f) => path.relative(REPO_ROOT, f)))('%s', (file) => {
    const docs = parseAllDocuments(readFileSync(repo(file), 'utf8'), { merge: true });
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) expect(doc.errors).toEqual([]);
  });

  it.each(filesUnder(repo('deploy'), /\.json$/).map((f) => path.relative(REPO_ROOT, f)))('%s', (file) => {
    expect(() => JSON.parse(readFileSync(repo(file), 'utf8'))).not.toThrow();
  });
});

describe('the configs shipped for compose and Kubernetes', () => {
  it.each(['deploy/compose/gateway.yaml', 'k8s/base/gateway.yaml', 'config/gateway.example.yaml'])('%s passes sluice config check', async (file) => {
    const out = await runCli(['config', 'check', repo(file)], ENV);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
  });
});

describe('Kubernetes (kustomize)', () => {
  const config = loadConfigFile(repo('k8s/base/gateway.yaml'), ENV);
  let objects: any[] = [];
  beforeAll(() => {
    if (hasCommand('kubectl')) {
      objects = parseAllDocuments(execFileSync('kubectl', ['kustomize', repo('k8s')], { encoding: 'utf8' })).map((d) => d.toJSON());
    } else {
      console.log('kubectl not installed: checking k8s/base files directly, without kustomize');
      objects = filesUnder(repo('k8s/base'), /\.yaml$/)
        .filter((f) => !f.endsWith('gateway.yaml') && !f.endsWith('kustomization.yaml'))
        .flatMap((f) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => d.toJSON()));
    }
  });
  const find = (kind: string) => objects.find((o) => o.kind === kind);

  it('renders every kind the deployment needs', () => {
    const kinds = objects.map((o) => o.kind).sort();
    for (const kind of ['Deployment', 'Service', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'ServiceMonitor', 'PrometheusRule', 'Namespace']) {
      expect(kinds).toContain(kind);
    }
    if (hasCommand('kubectl')) expect(kinds).toContain('ConfigMap');
  });

  it('probes readiness on /readyz and liveness on /healthz at the config\'s admin port; ports match the config', () => {
    const deployment = find('Deployment');
    expect(deployment.spec.replicas).toBe(3);
    const container = deployment.spec.template.spec.containers[0];
    const port = (name: string) => container.ports.find((p: any) => p.name === name).containerPort;
    expect(port('http')).toBe(config.listen.port);
    expect(port('admin')).toBe(config.admin.port);
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(container.lifecycle.preStop.exec.command[0]).toBe('sleep');
    expect(container.args).toEqual(['serve', '--config', '/etc/sluice/gateway.yaml']);
    expect(container.volumeMounts).toContainEqual({ name: 'config', mountPath: '/etc/sluice', readOnly: true });
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
  });

  it('runs non-root on a read-only root filesystem, spread over nodes, with time to drain', () => {
    const pod = find('Deployment').spec.template.spec;
    const container = pod.containers[0];
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(pod.topologySpreadConstraints.length).toBeGreaterThan(0);
    const preStopSeconds = Number(container.lifecycle.preStop.exec.command[1]);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(preStopSeconds * 1000 + config.lifecycle.drain_delay + config.lifecycle.grace);
  });

  it('selects the Deployment\'s pods from the Service, PDB, ServiceMonitor and HPA', () => {
    const deployment = find('Deployment');
    const podLabels = deployment.spec.template.metadata.labels;
    const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
    expect(matches(deployment.spec.selector.matchLabels)).toBe(true);
    expect(matches(find('Service').spec.selector)).toBe(true);
    expect(matches(find('PodDisruptionBudget').spec.selector.matchLabels)).toBe(true);
    expect(find('HorizontalPodAutoscaler').spec.scaleTargetRef.name).toBe(deployment.metadata.name);
    const serviceLabels = find('Service').metadata.labels;
    expect(Object.entries(find('ServiceMonitor').spec.selector.matchLabels).every(([k, v]) => serviceLabels[k] === v)).toBe(true);
    const servicePorts = find('Service').spec.ports.map((p: any) => p.name);
    expect(servicePorts).toContain(find('ServiceMonitor').spec.endpoints[0].port);
    const containerPortNames = deployment.spec.template.spec.containers[0].ports.map((p: any) => p.name);
    for (const p of find('Service').spec.ports) expect(containerPortNames).toContain(p.targetPort);
  });

  it('builds the PrometheusRule from deploy/prometheus/alerts.yml (no drift)', () => {
    const rule = find('PrometheusRule');
    expect(rule.spec.groups).toEqual(parse(readFileSync(repo('deploy/prometheus/alerts.yml'), 'utf8')).groups);
    expect(spawnSync(process.execPath, [repo('scripts/prometheusrule.mjs'), '--check']).status).toBe(0);
  });

  it('renders the dev-redis overlay', () => {
    if (!hasCommand('kubectl')) return console.log('kubectl not installed: overlay not rendered');
    const kinds = parseAllDocuments(execFileSync('kubectl', ['kustomize', repo('k8s/overlays/dev-redis')], { encoding: 'utf8' })).map((d) => d.toJSON().kind);
    expect(kinds.filter((k) => k === 'Deployment')).toHaveLength(2);
  });
});

describe('docker-compose', () => {
  const compose = parse(readFileSync(repo('docker-compose.yml'), 'utf8'), { merge: true });
  const gatewayConfig = loadConfigFile(repo('deploy/compose/gateway.yaml'), ENV);
  const gateways = ['gateway-1', 'gateway-2', 'gateway-3'];

  it('has the services of the stack, each with a healthcheck where it serves', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['demo-upstream', 'gateway-1', 'gateway-2', 'gateway-3', 'grafana', 'lb', 'prometheus', 'redis'].sort());
    for (const name of [...gateways, 'redis', 'lb', 'prometheus', 'grafana']) expect(compose.services[name].healthcheck?.test).toBeDefined();
  });

  it('runs three gateway replicas with the mounted config, the Redis URL and the image\'s start command', () => {
    for (const name of gateways) {
      const service = compose.services[name];
      expect(service.command).toEqual(['serve', '--config', '/etc/sluice/gateway.yaml']);
      expect(service.volumes).toContain('./deploy/compose/gateway.yaml:/etc/sluice/gateway.yaml:ro');
      expect(service.environment.REDIS_URL).toMatch(/^redis:\/\/redis:6379/);
      expect(String(service.healthcheck.test)).toContain(`:${gatewayConfig.admin.port}/healthz`);
    }
    expect(existsSync(repo('deploy/compose/gateway.yaml'))).toBe(true);
    expect(compose.services.redis.command).toContain('--appendonly');
  });

  it('balances over the three replicas on their listen port', () => {
    const nginx = readFileSync(repo('deploy/nginx/nginx.conf'), 'utf8');
    for (const name of gateways) expect(nginx).toContain(`server ${name}:${gatewayConfig.listen.port}`);
    expect(compose.services.lb.volumes).toContain('./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro');
  });

  it('scrapes every replica\'s admin port with Prometheus, and provisions Grafana from files that exist', () => {
    const prometheus = parse(readFileSync(repo('deploy/prometheus/prometheus.yml'), 'utf8'));
    const targets = prometheus.scrape_configs.flatMap((c: any) => (c.static_configs ?? []).flatMap((s: any) => s.targets));
    for (const name of gateways) expect(targets).toContain(`${name}:${gatewayConfig.admin.port}`);
    for (const file of prometheus.rule_files ?? []) expect(existsSync(repo('deploy/prometheus', file))).toBe(true);
    for (const volume of [...compose.services.prometheus.volumes, ...compose.services.grafana.volumes]) {
      const hostPath = volume.split(':')[0];
      expect([volume, existsSync(repo(hostPath))]).toEqual([volume, true]);
    }
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(repo('deploy/Dockerfile'), 'utf8');
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const final = stages[stages.length - 1];

  it('is multi-stage on node:22-slim, runs as a non-root user with a healthcheck on /healthz', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage.startsWith('node:22-slim')).toBe(true);
    const user = /^USER (\S+)/m.exec(final)?.[1];
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    expect(final).toMatch(/^HEALTHCHECK .*\n?.*\/healthz/m);
    expect(final).toContain('tini');
  });

  it('has no dev dependencies in the final stage and starts with the documented command', () => {
    expect(final).toContain('npm ci --omit=dev');
    expect(final).not.toMatch(/npm ci(?! --omit=dev)/);
    expect(final).toContain('CMD ["serve", "--config", "/etc/sluice/gateway.yaml"]');
    expect(final).toContain('ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/cli.js"]');
    expect(readFileSync(repo('README.md'), 'utf8')).toContain('/etc/sluice/gateway.yaml');
  });
});

describe('the image contents, without Docker', () => {
  let redis: TestRedis;
  let dir: string;
  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(path.join(tmpdir(), 'sluice-pack-'));
  });
  afterAll(async () => {
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('installs from npm pack with production dependencies only and serves /healthz with the image\'s command', async () => {
    const tarball = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: REPO_ROOT, encoding: 'utf8' }).trim().split('\n').pop()!;
    writeFileSync(path.join(dir, 'package.json'), '{"name":"image","private":true}');
    execFileSync('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', path.join(dir, tarball)], { cwd: dir, stdio: 'ignore' });
    const installed = path.join(dir, 'node_modules');
    expect(existsSync(path.join(installed, 'jest'))).toBe(false);
    expect(existsSync(path.join(installed, 'typescript'))).toBe(false);
    const cli = path.join(installed, 'sluice/dist/cli.js');

    // The compose config, on free ports, against a test Redis: the same file the image would mount.
    const config = readFileSync(repo('deploy/compose/gateway.yaml'), 'utf8')
      .replace('port: 8080', `port: ${await freePort()}`)
      .replace('port: 9090', `port: ${await freePort()}`);
    const configFile = path.join(dir, 'gateway.yaml');
    writeFileSync(configFile, config);
    const env = { ...ENV, REDIS_URL: redis.url };
    expect(spawnSync(process.execPath, [cli, 'config', 'check', configFile], { env }).status).toBe(0);

    const gateway = await startGateway(configFile, env, 20_000, cli);
    try {
      const health = await send(`${gateway.adminUrl}/healthz`);
      expect(health.status).toBe(200);
    } finally {
      await gateway.stop();
    }
  }, 180_000);
});
