import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfigFile } from '../../src/config/loader';
import { TrustedProxies } from '../../src/http/client-address';
import { REPO_ROOT, runCli, startGateway, startKeyedGateway } from '../support/gateway';
import { send } from '../support/http';
import { freePort } from '../support/ports';
import { startRedis, type TestRedis } from '../support/redis';
import { waitFor } from '../support/wait';

// The deploy artifacts, checked without Docker or a cluster: they parse, agree with each other and
// with the gateway's config, and the packaged gateway starts with the image's own command.

const repo = (...parts: string[]) => path.join(REPO_ROOT, ...parts);
const K8S_CONFIG = 'k8s/components/gateway/gateway.yaml';
const PACKAGE_VERSION = (JSON.parse(readFileSync(repo('package.json'), 'utf8')) as { version: string }).version;
const ENV = { ...process.env, REDIS_URL: 'redis://127.0.0.1:6379/0', SLUICE_ADMIN_TOKEN: 'a'.repeat(32), HOSTNAME: 'test' };

function filesUnder(dir: string, pattern: RegExp): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? filesUnder(full, pattern) : pattern.test(name) ? [full] : [];
  });
}

/** The `server { … }` blocks of an nginx config, as text. */
function nginxServers(conf: string): string[] {
  const blocks: string[] = [];
  for (const match of conf.matchAll(/\bserver\s*\{/g)) {
    let depth = 0;
    for (let i = match.index! + match[0].length - 1; i < conf.length; i++) {
      if (conf[i] === '{') depth++;
      if (conf[i] === '}' && --depth === 0) {
        blocks.push(conf.slice(match.index!, i + 1));
        break;
      }
    }
  }
  return blocks;
}

function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

/** Debian puts nginx in /usr/sbin, which a non-root PATH may lack. */
const NGINX = ['nginx', '/usr/sbin/nginx'].find(hasCommand);

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
  it.each(['deploy/compose/gateway.yaml', K8S_CONFIG, 'config/gateway.example.yaml'])('%s passes sluice config check', async (file) => {
    const out = await runCli(['config', 'check', repo(file)], ENV);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
  });
});

describe('Kubernetes (kustomize)', () => {
  const config = loadConfigFile(repo(K8S_CONFIG), ENV);
  const kustomize = (dir: string): any[] =>
    parseAllDocuments(execFileSync('kubectl', ['kustomize', repo(dir)], { encoding: 'utf8' })).map((d) => d.toJSON());
  let base: any[] = [];
  let monitoring: any[] = [];
  let storeInit: any[] = [];
  beforeAll(() => {
    if (!hasCommand('kubectl')) return; // the first test says so
    base = kustomize('k8s');
    monitoring = kustomize('k8s/overlays/monitoring');
    storeInit = kustomize('k8s/store-init');
  });
  const find = (objects: any[], kind: string) => objects.find((o) => o.kind === kind);

  it('renders with kubectl kustomize (kubectl must be installed)', () => {
    expect(hasCommand('kubectl')).toBe(true);
  });

  it('k8s/ renders the gateway with built-in kinds only, so it applies on a cluster without the prometheus-operator CRDs', () => {
    expect(base.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Namespace', 'PodDisruptionBudget', 'Service']);
    const builtIn = ['v1', 'apps/v1', 'autoscaling/v2', 'policy/v1', 'batch/v1'];
    for (const o of base) expect([o.kind, builtIn.includes(o.apiVersion)]).toEqual([o.kind, true]);
  });

  it('the monitoring overlay adds the ServiceMonitor and PrometheusRule to the same objects', () => {
    const kinds = monitoring.map((o) => o.kind);
    expect(kinds.filter((k) => k === 'ServiceMonitor' || k === 'PrometheusRule').sort()).toEqual(['PrometheusRule', 'ServiceMonitor']);
    const others = monitoring.filter((o) => !o.apiVersion.startsWith('monitoring.coreos.com/'));
    expect(others).toEqual(base);
    for (const o of monitoring) expect(o.metadata.namespace ?? o.metadata.name).toBe('sluice');
  });

  it('the image is sluice:<package version>, as the README and the Dockerfile build it', () => {
    const image = `sluice:${PACKAGE_VERSION}`;
    expect(find(base, 'Deployment').spec.template.spec.containers[0].image).toBe(image);
    expect(find(storeInit, 'Job').spec.template.spec.containers[0].image).toBe(image);
    const build = `docker build -f deploy/Dockerfile -t ${image} .`;
    expect(readFileSync(repo('README.md'), 'utf8')).toContain(build);
    expect(readFileSync(repo('deploy/Dockerfile'), 'utf8')).toContain(build);
  });

  it('probes readiness on /readyz and liveness on /healthz at the config\'s admin port; ports match the config', () => {
    const deployment = find(base, 'Deployment');
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
    // The image's young generation (three semi-spaces at most) leaves the old generation room under the limit.
    const semiSpaceMb = Number(/--max-semi-space-size=(\d+)/.exec(readFileSync(repo('deploy/Dockerfile'), 'utf8'))![1]);
    const limitMb = Number(/^(\d+)Mi$/.exec(container.resources.limits.memory)![1]);
    expect(limitMb).toBeGreaterThanOrEqual(3 * semiSpaceMb + 256);
    const configMap = find(base, 'ConfigMap');
    expect(deployment.spec.template.spec.volumes).toContainEqual({ name: 'config', configMap: { name: configMap.metadata.name } });
    expect(configMap.data['gateway.yaml']).toBe(readFileSync(repo(K8S_CONFIG), 'utf8'));
  });

  it('runs non-root on a read-only root filesystem, spread over nodes, with time to drain', () => {
    const pod = find(base, 'Deployment').spec.template.spec;
    const container = pod.containers[0];
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(pod.topologySpreadConstraints.length).toBeGreaterThan(0);
    const preStopSeconds = Number(container.lifecycle.preStop.exec.command[1]);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(preStopSeconds * 1000 + config.lifecycle.drain_delay + config.lifecycle.grace);
  });

  it('selects the Deployment\'s pods from the Service, PDB, ServiceMonitor and HPA', () => {
    const deployment = find(base, 'Deployment');
    const podLabels = deployment.spec.template.metadata.labels;
    const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
    expect(matches(deployment.spec.selector.matchLabels)).toBe(true);
    expect(matches(find(base, 'Service').spec.selector)).toBe(true);
    expect(matches(find(base, 'PodDisruptionBudget').spec.selector.matchLabels)).toBe(true);
    expect(find(base, 'HorizontalPodAutoscaler').spec.scaleTargetRef.name).toBe(deployment.metadata.name);
    const serviceMonitor = find(monitoring, 'ServiceMonitor');
    const serviceLabels = find(base, 'Service').metadata.labels;
    expect(Object.entries(serviceMonitor.spec.selector.matchLabels).every(([k, v]) => serviceLabels[k] === v)).toBe(true);
    const servicePorts = find(base, 'Service').spec.ports.map((p: any) => p.name);
    expect(servicePorts).toContain(serviceMonitor.spec.endpoints[0].port);
    const containerPortNames = deployment.spec.template.spec.containers[0].ports.map((p: any) => p.name);
    for (const p of find(base, 'Service').spec.ports) expect(containerPortNames).toContain(p.targetPort);
  });

  it('builds the PrometheusRule from deploy/prometheus/alerts.yml (no drift), where npm run k8s:rules writes it', () => {
    const rule = find(monitoring, 'PrometheusRule');
    expect(rule.spec.groups).toEqual(parse(readFileSync(repo('deploy/prometheus/alerts.yml'), 'utf8')).groups);
    const check = spawnSync(process.execPath, [repo('scripts/prometheusrule.mjs'), '--check'], { encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
    expect(readFileSync(repo('scripts/prometheusrule.mjs'), 'utf8')).toContain("'k8s/overlays/monitoring/prometheusrule.yaml'");
  });

  it('ships a sluice-store-init Job that runs store init with the Deployment\'s config, image and secret, apart from k8s/', () => {
    expect(storeInit.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Job']);
    expect(base.some((o) => o.kind === 'Job')).toBe(false); // re-applying the gateway never re-initialises a store
    const job = find(storeInit, 'Job');
    const deployment = find(base, 'Deployment');
    expect(job.metadata.name).toBe('sluice-store-init');
    expect(job.metadata.namespace).toBe('sluice');
    const pod = job.spec.template.spec;
    const container = pod.containers[0];
    expect(container.args).toEqual(['store', 'init', '--config', '/etc/sluice/gateway.yaml']);
    expect(['Never', 'OnFailure']).toContain(pod.restartPolicy);
    expect(container.envFrom).toEqual(deployment.spec.template.spec.containers[0].envFrom);
    expect(container.volumeMounts).toContainEqual({ name: 'config', mountPath: '/etc/sluice', readOnly: true });
    // The same ConfigMap, by its hashed name: the same config file, so the same store and key prefix.
    expect(find(storeInit, 'ConfigMap')).toEqual(find(base, 'ConfigMap'));
    expect(pod.volumes).toContainEqual({ name: 'config', configMap: { name: find(base, 'ConfigMap').metadata.name } });
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    // Its pod is no gateway: the Service and the PDB must not select it.
    const jobLabels = job.spec.template.metadata.labels;
    const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => jobLabels[k] === v);
    expect(selects(find(base, 'Service').spec.selector)).toBe(false);
    expect(selects(find(base, 'PodDisruptionBudget').spec.selector.matchLabels)).toBe(false);
  });

  it('renders the dev-redis overlay', () => {
    const kinds = kustomize('k8s/overlays/dev-redis').map((o) => o.kind);
    expect(kinds.filter((k) => k === 'Deployment')).toHaveLength(2);
  });

  it('the README\'s steps work in order: namespace, then the Secret in it, then store-init, then the gateway', () => {
    const readme = readFileSync(repo('README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('**Kubernetes.**'));
    const steps = [
      'kubectl apply -f k8s/base/namespace.yaml',
      'kubectl -n sluice create secret generic sluice-secrets',
      'kubectl apply -k k8s/store-init',
      'kubectl apply -k k8s/ ',
      'kubectl apply -k k8s/overlays/monitoring',
    ];
    const at = steps.map((step) => section.indexOf(step));
    expect(steps.map((step, i) => [step, at[i] >= 0])).toEqual(steps.map((step) => [step, true]));
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    // What the steps name exists and agrees: the namespace, the Secret's name and keys, every -k directory.
    const namespace = parse(readFileSync(repo('k8s/base/namespace.yaml'), 'utf8'));
    expect(namespace.metadata.name).toBe('sluice');
    const template = parse(readFileSync(repo('k8s/secret.template.yaml'), 'utf8'));
    expect(template.metadata).toEqual({ name: 'sluice-secrets', namespace: 'sluice' });
    expect(find(base, 'Deployment').spec.template.spec.containers[0].envFrom).toEqual([{ secretRef: { name: 'sluice-secrets' } }]);
    for (const name of Object.keys(template.stringData)) expect(section).toContain(`--from-literal=${name}=`);
    // Applied unfilled, its placeholder token is refused at start (admin tokens are 32+ characters):
    // a template never becomes a well-known token.
    expect(template.stringData.SLUICE_ADMIN_TOKEN.length).toBeLessThan(32);
    for (const [, dir] of section.matchAll(/kubectl apply -k ([^\s`]+)/g)) expect(() => kustomize(dir)).not.toThrow();
  });
});

describe('docker-compose', () => {
  const compose = parse(readFileSync(repo('docker-compose.yml'), 'utf8'), { merge: true });
  const gatewayConfig = loadConfigFile(repo('deploy/compose/gateway.yaml'), ENV);
  const gateways = ['gateway-1', 'gateway-2', 'gateway-3'];
  const nginx = readFileSync(repo('deploy/nginx/nginx.conf'), 'utf8');

  it('has the services of the stack, each long-running one with a healthcheck of its own', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['demo-upstream', 'gateway-1', 'gateway-2', 'gateway-3', 'grafana', 'lb', 'prometheus', 'redis', 'store-init'].sort());
    for (const name of [...gateways, 'redis', 'lb', 'prometheus', 'grafana', 'demo-upstream']) expect([name, compose.services[name].healthcheck?.test]).toEqual([name, expect.any(Array)]);
  });

  it('no container of the sluice image inherits the image\'s HEALTHCHECK (the admin port) unless it serves that port', () => {
    const imageCheckPort = /process\.env\.SLUICE_ADMIN_PORT \|\| (\d+)/.exec(readFileSync(repo('deploy/Dockerfile'), 'utf8'))![1];
    expect(Number(imageCheckPort)).toBe(gatewayConfig.admin.port);
    for (const [name, service] of Object.entries<any>(compose.services)) {
      if (service.image !== 'sluice:local') continue;
      const serves = (service.command ?? [])[0] === 'serve';
      if (!serves) expect([name, service.healthcheck !== undefined]).toEqual([name, true]);
    }
    const upstream = compose.services['demo-upstream'];
    expect(String(upstream.healthcheck.test)).toContain(`127.0.0.1:${upstream.environment.PORT}/`);
    expect(compose.services['store-init'].healthcheck).toEqual({ disable: true });
  });

  it('runs three gateway replicas with the mounted config, the Redis URL and the image\'s start command', () => {
    for (const name of gateways) {
      const service = compose.services[name];
      expect(service.command).toEqual(['serve', '--config', '/etc/sluice/gateway.yaml']);
      expect(service.volumes).toContain('./deploy/compose/gateway.yaml:/etc/sluice/gateway.yaml:ro');
      expect(service.environment.REDIS_URL).toMatch(/^redis:\/\/redis:6379/);
      expect(String(service.healthcheck.test)).toContain(`:${gatewayConfig.admin.port}/healthz`);
      expect(service.depends_on['demo-upstream']).toEqual({ condition: 'service_healthy' });
    }
    expect(existsSync(repo('deploy/compose/gateway.yaml'))).toBe(true);
    expect(compose.services.redis.command).toContain('--appendonly');
  });

  it('runs store init once, with the replicas\' config, before any replica starts', () => {
    const init = compose.services['store-init'];
    expect(init.command).toEqual(['store', 'init', '--config', '/etc/sluice/gateway.yaml']);
    expect(init.image).toBe(compose.services['gateway-1'].image);
    expect(init.volumes).toEqual(compose.services['gateway-1'].volumes);
    expect(init.environment).toEqual(compose.services['gateway-1'].environment);
    expect(init.depends_on.redis).toEqual({ condition: 'service_healthy' });
    expect(init.restart).toBe('no');
    for (const name of gateways) expect(compose.services[name].depends_on['store-init']).toEqual({ condition: 'service_completed_successfully' });
  });

  it('requires SLUICE_ADMIN_TOKEN from the environment: no default token', () => {
    for (const name of [...gateways, 'store-init']) {
      expect(compose.services[name].environment.SLUICE_ADMIN_TOKEN).toMatch(/^\$\{SLUICE_ADMIN_TOKEN:\?[^}]*32[^}]*\}$/);
    }
    const readme = readFileSync(repo('README.md'), 'utf8');
    expect(readme.slice(readme.indexOf('**docker compose.**'))).toMatch(/export SLUICE_ADMIN_TOKEN=.*\n[\s\S]*docker compose up/);
  });

  it('trusts only the balancer: trusted_proxies is exactly its fixed address, which no other container can get', () => {
    const network = compose.networks.default.ipam.config[0];
    const address = compose.services.lb.networks.default.ipv4_address;
    expect(gatewayConfig.trusted_proxies).toEqual([address]);
    const trusted = new TrustedProxies([network.subnet]);
    expect(trusted.has(address)).toBe(true); // inside the network's subnet
    expect(new TrustedProxies([network.ip_range]).has(address)).toBe(false); // outside the range others get
    for (const [name, service] of Object.entries<any>(compose.services)) {
      if (name !== 'lb') expect([name, JSON.stringify(service.networks ?? {}).includes(address)]).toEqual([name, false]);
    }
  });

  it('balances over the three replicas on their listen port; its healthcheck asks a port nginx answers itself', () => {
    for (const name of gateways) expect(nginx).toContain(`server ${name}:${gatewayConfig.listen.port}`);
    expect(compose.services.lb.volumes).toContain('./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro');
    const target = /http:\/\/127\.0\.0\.1:(\d+)(\/\S*)/.exec(String(compose.services.lb.healthcheck.test))!;
    expect(target).not.toBeNull();
    const published = compose.services.lb.ports.map((p: string) => p.split(':').pop());
    expect(published).not.toContain(target[1]);
    const server = nginxServers(nginx).find((block) => block.includes(`listen ${target[1]};`))!;
    expect(server).toBeDefined();
    expect(server).toMatch(new RegExp(`location = ${target[2]} \\{[^}]*return 200`));
  });

  it('nginx passes the client address from the connection, drops a client\'s Forwarded, and keeps the host\'s port', () => {
    const location = nginxServers(nginx).find((block) => block.includes('proxy_pass http://sluice'))!;
    const headers = Object.fromEntries([...location.matchAll(/proxy_set_header\s+(\S+)\s+([^;]+);/g)].map((m) => [m[1].toLowerCase(), m[2].trim()]));
    expect(headers['x-real-ip']).toBe('$remote_addr');
    expect(headers['x-forwarded-for']).toBe('$remote_addr');
    expect(headers.forwarded).toBe('""');
    expect(headers.host).toBe('$http_host');
    expect(headers['x-forwarded-host']).toBe('$http_host');
    expect(nginx).not.toContain('$proxy_add_x_forwarded_for');
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

describe('the shipped nginx.conf, run by a real nginx in front of a gateway that trusts it', () => {
  // The file as shipped; only what cannot be the same outside compose is replaced: the replicas'
  // names and ports, the two listen ports, and where a non-root-style run keeps its pid and temp files.
  const KEY = 'sk_test_nginx_0123456789abcdef';
  let keyed: Awaited<ReturnType<typeof startKeyedGateway>>;
  let nginx: ChildProcess | undefined;
  let dir: string;
  let port: number;
  let healthPort: number;
  beforeAll(async () => {
    expect(NGINX).toBeDefined(); // apt-get install nginx-light
    keyed = await startKeyedGateway(KEY, {
      trusted_proxies: ['127.0.0.1'],
      rate_limiting: { failed_keys: { max_attempts: 5, per: '1m', block_for: '1m' } },
    });
    dir = mkdtempSync(path.join(tmpdir(), 'sluice-nginx-'));
    [port, healthPort] = [await freePort(), await freePort()];
    const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t};`).join('\n');
    const conf = readFileSync(repo('deploy/nginx/nginx.conf'), 'utf8')
      .replace(/server gateway-\d+:\d+/g, `server 127.0.0.1:${keyed.gateway.port}`)
      .replace('listen 8080;', `listen 127.0.0.1:${port};`)
      .replace('listen 8081;', `listen 127.0.0.1:${healthPort};`)
      .replace(/^http \{/m, `http {\n${temp}\n  access_log off;`);
    writeFileSync(path.join(dir, 'nginx.conf'), conf);
    nginx = spawn(NGINX!, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log'), '-g', `daemon off; master_process off; pid ${dir}/nginx.pid;`], { stdio: 'ignore' });
    await waitFor(async () => (await send(`http://127.0.0.1:${healthPort}/healthz`)).status === 200, 10_000, { what: 'nginx listening' });
  }, 30_000);
  afterAll(async () => {
    if (nginx?.pid) {
      const exited = new Promise((resolve) => nginx!.once('exit', resolve));
      nginx.kill('SIGTERM');
      await exited;
    }
    await keyed?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers its own /healthz without a key, on the port the compose healthcheck asks', async () => {
    const res = await send(`http://127.0.0.1:${healthPort}/healthz`);
    expect(res.status).toBe(200);
    expect(keyed.upstream.requests).toHaveLength(0);
  });

  it('passes the address of the connection, never a client\'s forged X-Real-IP, X-Forwarded-For or Forwarded, and the host with its port', async () => {
    keyed.upstream.reset();
    const res = await send(`http://127.0.0.1:${port}/v1/users/ok`, {
      headers: {
        'x-api-key': KEY,
        'x-real-ip': '6.6.6.6',
        'x-forwarded-for': '6.6.6.6',
        forwarded: 'for=6.6.6.6;proto=https',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-proto': 'https',
      },
    });
    expect(res.status).toBe(200);
    const seen = keyed.upstream.requests[0].headers;
    expect(JSON.stringify(seen)).not.toContain('6.6.6.6');
    expect(seen['x-real-ip']).toBe('127.0.0.1');
    expect(seen.forwarded).toBeUndefined();
    expect(seen['x-forwarded-for']).toBe('127.0.0.1, 127.0.0.1'); // nginx's client, then nginx itself (the gateway's peer)
    expect(seen['x-forwarded-host']).toBe(`127.0.0.1:${port}`);
    expect(seen['x-forwarded-proto']).toBe('http');
  });

  it('a client rotating its own X-Forwarded-For is still counted by the failed-key guard as one address', async () => {
    const statuses: number[] = [];
    for (let i = 1; i <= 8; i++) {
      const res = await send(`http://127.0.0.1:${port}/v1/users/ok`, { headers: { 'x-api-key': `sk_bad_${i}_0123456789abcdef`, 'x-forwarded-for': `203.0.113.${i}` } });
      statuses.push(res.status);
    }
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.slice(5)).toEqual([429, 429, 429]);
  });
});

describe('Dockerfile', () => {
  it('gives node the flags the bench runs sluice with: the bench reads them from the ENTRYPOINT', () => {
    const bench = readFileSync(repo('load-tests/lib/servers.mjs'), 'utf8');
    expect(bench).toMatch(/readFileSync\(path\.join\(ROOT, 'deploy\/Dockerfile'\)/);
    expect(bench).toMatch(/\[\.\.\.IMAGE_NODE_FLAGS, \.\.\.nodeArgs, path\.join\(root, 'dist\/cli\.js'\), 'serve'/);
  });

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
    expect(final).toContain('ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=64", "dist/cli.js"]');
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
    expect(spawnSync(process.execPath, [cli, '--version'], { encoding: 'utf8' }).stdout.trim()).toBe(PACKAGE_VERSION);

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
