import type { Logger } from 'pino';
import { createAdminServer } from './admin/server';
import { KeyService } from './admin/key-service';
import { createKeysApi } from './admin/keys-api';
import { ConfigError, loadConfigFile } from './config/loader';
import { restartOnlyChanges, type Config } from './config/schema';
import { watchConfigFile } from './config/watch';
import { addBreakerSource, configReloads, registry } from './metrics/registry';
import { createLogger } from './log';
import { TrustedProxies } from './http/client-address';
import { Upstreams } from './proxy/upstreams';
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
  readonly adminPort: number;
  readonly store: KeyStore;
  readonly log: Logger;
  /** The drain sequence: not ready → drain_delay → stop accepting → in-flight finish (≤ grace) → close all. */
  shutdown(): Promise<void>;
  /** Re-reads the config file (SIGHUP); false when it was refused and the running config stays. */
  reload(): boolean;
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wiring only: store, runtime, public and admin listeners, health watch, reload, drain. */
export async function startGateway(
  config: Config,
  log: Logger = createLogger(config.log.level),
  options: { configFile?: string } = {},
): Promise<RunningGateway> {
  const backends = openBackends(config, log);
  const store = backends.keyStore;
  if (store.kind === 'memory') {
    log.warn('using the embedded in-memory key store: one replica only, keys are lost on exit; set store.redis to share keys');
  }
  zeroKnownSeries(config); // before the first Redis call or request, so no zeroed histogram had observations
  await connectKeyStore(store, log);

  const keyCache = new KeyCache(store, { ttlMs: config.store.cache.ttl, maxEntries: config.store.cache.max_entries });
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
  const keyService = new KeyService({ store, events: backends.keyEvents, limiter: backends.limiter, config: () => runtime.config, log });
  const admin = createAdminServer(
    { notReadyReason: () => notReadyReason(draining, health.state, config.failure_policy) },
    createKeysApi({ service: keyService, token: config.admin.token, log }),
  );
  if ((await health.check()) === 'ok') {
    seeded = true;
    await seedKeys(config, store, log); // a failure here fails the start, as a bad seed should
  }
  health.start();

  const port = await server.listen(config.listen.host, config.listen.port);
  const adminPort = await new Promise<number>((resolve, reject) => {
    admin.once('error', reject);
    admin.listen(config.admin.port, config.admin.host, () => resolve((admin.address() as { port: number }).port));
  });
  log.info({ host: config.listen.host, port, admin_host: config.admin.host, admin_port: adminPort, store: store.kind }, 'sluice listening');

  // Hot reload: a new runtime (routes, upstreams, tiers, limits) for new requests; requests in flight
  // finish on the one they started with. Upstreams whose settings did not change keep their pools and
  // breakers; the others' pools close once their requests are done.
  const reload = (): boolean => {
    if (!options.configFile) return false;
    let next: Config;
    try {
      next = loadConfigFile(options.configFile);
    } catch (err) {
      configReloads.inc({ result: 'failed' });
      const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
      log.error({ problems }, 'config reload refused: the running config stays');
      return false;
    }
    const restartOnly = restartOnlyChanges(runtime.config, next);
    if (restartOnly.length > 0) log.warn({ sections: restartOnly }, 'config reloaded; these sections take effect only after a restart');
    const previous = runtime;
    zeroKnownSeries(next); // before the new runtime answers anything, so no series is reset after use
    runtime = buildRuntime(next, backends, keyCache, log, previous);
    log.level = next.log.level;
    void previous.upstreams.retire(runtime.upstreams, next.lifecycle.grace);
    configReloads.inc({ result: 'ok' });
    log.info({ routes: next.routes.length, upstreams: Object.keys(next.upstreams).length, tiers: Object.keys(next.tiers).length }, 'config reloaded');
    return true;
  };
  const removeBreakerSource = addBreakerSource(() => runtime.upstreams.readings());
  registry.setDefaultLabels(config.metrics.default_labels);
  const stopWatching = options.configFile ? watchConfigFile(options.configFile, reload) : () => undefined;

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
      admin.closeAllConnections();
      await new Promise((resolve) => admin.close(resolve));
      log.info('stopped');
    })());

  return { port, adminPort, store, log, shutdown, reload };
}
