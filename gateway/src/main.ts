import type http from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { createAdminServer, type Readiness } from './admin/server';
import { KeyService } from './admin/key-service';
import { createKeysApi } from './admin/keys-api';
import { FailedTokenGuard } from './admin/failed-token-guard';
import { ConfigError, loadConfigFile } from './config/loader';
import { restartOnlyChanges, type Config } from './config/schema';
import { watchFiles } from './config/watch';
import { tlsFilePaths } from './config/tls-files';
import { addBreakerSource, configReloads, registry } from './metrics/registry';
import { AccessLog, createLogger } from './log';
import { requestClientAddress, TrustedProxies } from './http/client-address';
import { Upstreams } from './proxy/upstreams';
import { warnUnverifiedUpstreams } from './proxy/upstream-tls';
import { prepareRenewal } from './http/tls-listener';
import { RouteTable } from './routing/route-table';
import type { Runtime } from './runtime';
import { GatewayServer } from './server';
import { StoreHealth, type StoreState } from './keys/health';
import { KeyCache } from './keys/cache';
import { connectKeyStore, openBackends, type Backends } from './backends';
import { RateLimitPlan } from './ratelimit/plan';
import type { KeyStore } from './keys/types';
import { seedKeys } from './keys/store-init';
import { zeroKnownSeries } from './metrics/known-series';

export interface RunningGateway {
  readonly port: number;
  /** 0 in a worker of `serve --workers N`: its primary serves the admin port. */
  readonly adminPort: number;
  readonly store: KeyStore;
  readonly log: Logger;
  /** The drain sequence: not ready → drain_delay → stop accepting → in-flight finish (≤ grace) → close all. */
  shutdown(): Promise<void>;
  /** Re-reads the config file (SIGHUP); false when it was refused and the running config stays. */
  reload(): boolean;
  /** Null when ready, else why not (what /readyz shows). */
  notReadyReason(): string | null;
}

export interface StartOptions {
  /** The file to re-read on reload, and (outside a worker) to watch. */
  configFile?: string;
  /**
   * A worker of `serve --workers N` (cluster/worker.ts): the primary serves the admin port and
   * watches the config file, so the worker opens neither.
   */
  worker?: boolean;
}


function buildRuntime(config: Config, backends: Backends, keys: KeyCache, log: Logger, previous?: Runtime): Runtime {
  return {
    config,
    routes: new RouteTable(config.routes),
    upstreams: new Upstreams(config.upstreams, previous?.upstreams),
    keys,
    trustedProxies: new TrustedProxies(config.trusted_proxies),
    rateLimitPlan: new RateLimitPlan(config),
    limiter: backends.limiter,
    failedKeys: backends.failedKeys,
    log,
    accessLog: previous?.accessLog ?? new AccessLog(log),
  };
}

/**
 * Ready: not draining, the key store holds its marker, and Redis answers — or, under fail_open_local,
 * the replica can do without it for now (cached keys, local limits): taking every replica out of the
 * load balancer because Redis blinked would turn a degraded service into an outage.
 */
function notReadyReason(draining: boolean, store: StoreState, policy: Config['failure_policy']): string | null {
  if (draining) return 'draining';
  if (store === 'marker_missing') return 'marker_missing';
  if (store === 'unreachable' && policy === 'fail_closed') return 'unreachable';
  return null;
}

/**
 * The config file read again for a reload and handed to `apply` (which throws to refuse it, e.g. a
 * certificate file that cannot be used); undefined (counted, logged) when the file or `apply` refused.
 */
export function tryReload(file: string, log: Logger, apply: (next: Config) => void): Config | undefined {
  try {
    const next = loadConfigFile(file);
    apply(next);
    return next;
  } catch (err) {
    configReloads.inc({ result: 'failed' });
    const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
    log.error({ problems }, 'config reload refused: the running config stays');
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wiring only: store, runtime, public and admin listeners, health watch, reload, drain. */
export async function startGateway(
  config: Config,
  log: Logger = createLogger(config.log.level),
  options: StartOptions = {},
): Promise<RunningGateway> {
  const backends = openBackends(config, log);
  const store = backends.keyStore;
  if (store.kind === 'memory') {
    log.warn('using the embedded in-memory key store: one replica only, keys are lost on exit; set store.redis to share keys');
  }
  zeroKnownSeries(config); // before the first Redis call or request, so no zeroed histogram had observations
  await connectKeyStore(store, log);

  const keyCache = new KeyCache(store, { ttlMs: config.store.cache.ttl, maxEntries: config.store.cache.max_entries });
  warnUnverifiedUpstreams(config, log);
  let runtime = buildRuntime(config, backends, keyCache, log);
  // Seed keys go only into an initialised store (keys/store-init.ts): at start when it holds its
  // marker, else once it does (after `sluice store init` or `sluice keys import`), from the health watch.
  let seeded = false;
  const seedOnce = async () => {
    if (seeded) return;
    seeded = true;
    try {
      await seedKeys(runtime.config, store, log);
    } catch (err) {
      seeded = false; // the store failed meanwhile: try again at its next healthy check
      log.warn({ err: (err as Error).message }, 'seeding API keys from the config failed; retrying once the store is healthy');
    }
  };
  const health = new StoreHealth(store, log, () => void seedOnce());
  let draining = false;
  const server = new GatewayServer(() => runtime);
  backends.keyEvents.listen(keyCache); // a key changed on any replica: drop it here too
  const readiness = { notReadyReason: () => notReadyReason(draining, health.state, config.failure_policy) };
  const admin = options.worker
    ? undefined
    : createAdmin(config, backends, {
        currentConfig: () => runtime.config,
        readiness,
        clientAddress: (req) => requestClientAddress(req, runtime.trustedProxies),
        log,
      });
  if ((await health.check()) === 'ok') {
    seeded = true;
    await seedKeys(config, store, log); // a failure here fails the start, as a bad seed should
  }
  health.start();

  const port = await server.listen(config.listen.host, config.listen.port);
  const adminPort = admin ? await listenAdmin(admin, config) : 0;
  if (admin) log.info({ host: config.listen.host, port, admin_host: config.admin.host, admin_port: adminPort, store: store.kind }, 'sluice listening');
  else log.info({ host: config.listen.host, port, store: store.kind }, 'worker listening');

  // Hot reload: a new runtime (routes, upstreams, tiers, limits) for new requests; requests in flight
  // finish on the one they started with. Upstreams whose settings and TLS files did not change keep
  // their pools and breakers; the others' pools close once their requests are done. The listeners'
  // certificate files are re-read (a renewed certificate). Any part failing refuses the whole reload.
  const reload = (): boolean => {
    if (!options.configFile) return false;
    const previous = runtime;
    const next = tryReload(options.configFile, log, (next) => {
      // The files were checked by the schema, but may change again before they are read here.
      const renewListener = server.prepareRenewal(next.listen.tls);
      const renewAdmin = admin ? prepareRenewal(admin, next.admin.tls) : () => undefined;
      zeroKnownSeries(next); // before the new runtime answers anything, so no series is reset after use
      runtime = buildRuntime(next, backends, keyCache, log, previous);
      renewListener();
      renewAdmin();
    });
    if (!next) return false;
    const restartOnly = restartOnlyChanges(previous.config, next);
    if (restartOnly.length > 0) log.warn({ sections: restartOnly }, 'config reloaded; these sections take effect only after a restart');
    warnUnverifiedUpstreams(next, log);
    log.level = next.log.level;
    void previous.upstreams.retire(runtime.upstreams, next.lifecycle.grace);
    configReloads.inc({ result: 'ok' });
    log.info({ routes: next.routes.length, upstreams: Object.keys(next.upstreams).length, tiers: Object.keys(next.tiers).length }, 'config reloaded');
    return true;
  };
  const removeBreakerSource = addBreakerSource(() => runtime.upstreams.readings());
  registry.setDefaultLabels(config.metrics.default_labels);
  const configFile = options.configFile;
  // The config file, and the certificate files it names: a renewed certificate needs no SIGHUP. Under
  // `serve --workers N` the primary watches them and tells the workers.
  const stopWatching = configFile && !options.worker ? watchFiles(() => [configFile, ...tlsFilePaths(runtime.config)], reload) : () => undefined;

  let shuttingDown: Promise<void> | undefined;
  const shutdown = () =>
    (shuttingDown ??= (async () => {
      draining = true;
      stopWatching();
      log.info({ drain_delay_ms: config.lifecycle.drain_delay }, 'draining: readiness is now false');
      await sleep(config.lifecycle.drain_delay);
      server.stopAccepting();
      const finished = await server.waitForInFlight(config.lifecycle.grace);
      if (!finished) log.warn({ in_flight: server.requestsInFlight }, 'grace period over: closing the remaining connections');
      server.closeAllConnections();
      health.stop();
      removeBreakerSource();
      await runtime.upstreams.close();
      await backends.close();
      if (admin) await closeAdmin(admin);
      log.info('stopped');
    })());

  return { port, adminPort, store, log, shutdown, reload, notReadyReason: readiness.notReadyReason };
}

/**
 * The admin port's server: the key API on `keys`' store, events and limiter, behind the admin token
 * and its failed-token guard. `metrics`: what /metrics serves (default: this process's registry).
 */
export function createAdmin(
  config: Config,
  keys: Pick<Backends, 'keyStore' | 'keyEvents' | 'limiter'>,
  options: { currentConfig: () => Config; readiness: Readiness; clientAddress: (req: IncomingMessage) => string; log: Logger; metrics?: () => Promise<string> },
): http.Server {
  const { currentConfig, readiness, clientAddress, log, metrics } = options;
  const service = new KeyService({ store: keys.keyStore, events: keys.keyEvents, limiter: keys.limiter, config: currentConfig, log });
  const keysApi = createKeysApi({
    service,
    token: config.admin.token,
    failedTokens: new FailedTokenGuard(config.admin.failed_tokens),
    clientAddress,
    bodyTimeoutMs: config.listen.body_timeout,
    log,
  });
  return createAdminServer(config.listen, readiness, keysApi, { tls: config.admin.tls, log, metrics });
}

/** Listens on the configured admin host and port; resolves with the port (admin.port 0: a free one). */
export function listenAdmin(admin: http.Server, config: Config): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    admin.once('error', reject);
    admin.listen(config.admin.port, config.admin.host, () => resolve((admin.address() as { port: number }).port));
  });
}

export async function closeAdmin(admin: http.Server): Promise<void> {
  admin.closeAllConnections();
  await new Promise((resolve) => admin.close(resolve));
}
