import type { Logger } from 'pino';
import { createAdminServer } from './admin/server';
import type { Config } from './config/schema';
import { createLogger } from './log';
import { TrustedProxies } from './proxy/client-address';
import { Upstreams } from './proxy/upstreams';
import { RouteTable } from './routing/route-table';
import type { Runtime } from './runtime';
import { GatewayServer } from './server';
import { StoreHealth } from './store/health';
import { KeyCache } from './store/key-cache';
import { connectKeyStore, openBackends, type Backends } from './store/open';
import { RateLimitPlan } from './ratelimit/plan';
import { KeyExistsError, type KeyStore } from './store/types';

export interface RunningGateway {
  readonly port: number;
  readonly adminPort: number;
  readonly store: KeyStore;
  readonly log: Logger;
  /** The drain sequence: not ready → drain_delay → stop accepting → in-flight finish (≤ grace) → close all. */
  shutdown(): Promise<void>;
}

function buildRuntime(config: Config, backends: Backends, log: Logger): Runtime {
  return {
    config,
    routes: new RouteTable(config.routes),
    upstreams: new Upstreams(config.upstreams),
    keys: new KeyCache(backends.keyStore, { ttlMs: config.store.cache.ttl, maxEntries: config.store.cache.max_entries }),
    trustedProxies: new TrustedProxies(config.trusted_proxies),
    rateLimitPlan: new RateLimitPlan(config),
    limiter: backends.limiter,
    failedKeys: backends.failedKeys,
    log,
  };
}

/** Keys listed under `keys:` in the YAML; creating one that exists already is not an error (every replica tries). */
async function seedKeys(config: Config, store: KeyStore, log: Logger): Promise<void> {
  for (const seed of config.keys) {
    try {
      await store.create(seed);
      log.info({ name: seed.name, tier: seed.tier }, 'seeded API key from config');
    } catch (err) {
      if (!(err instanceof KeyExistsError)) throw err;
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wiring only: store, runtime, public and admin listeners, health watch, drain. */
export async function startGateway(config: Config, log: Logger = createLogger(config.log.level)): Promise<RunningGateway> {
  const backends = openBackends(config, log);
  const store = backends.keyStore;
  if (store.kind === 'memory') {
    log.warn('using the embedded in-memory key store: one replica only, keys are lost on exit; set store.redis to share keys');
  }
  if (await connectKeyStore(store, log)) {
    await store.ensureMarker();
    await seedKeys(config, store, log);
  }

  const runtime = buildRuntime(config, backends, log);
  const health = new StoreHealth(store, log);
  let draining = false;
  const server = new GatewayServer(() => runtime);
  const admin = createAdminServer({
    notReadyReason: () => (draining ? 'draining' : health.state === 'ok' ? null : health.state),
  });
  await health.check();
  health.start();

  const port = await server.listen(config.listen.host, config.listen.port);
  const adminPort = await new Promise<number>((resolve, reject) => {
    admin.once('error', reject);
    admin.listen(config.admin.port, config.admin.host, () => resolve((admin.address() as { port: number }).port));
  });
  log.info({ host: config.listen.host, port, admin_host: config.admin.host, admin_port: adminPort, store: store.kind }, 'sluice listening');

  let shuttingDown: Promise<void> | undefined;
  const shutdown = () =>
    (shuttingDown ??= (async () => {
      draining = true;
      log.info({ drain_delay_ms: config.lifecycle.drain_delay }, 'draining: readiness is now false');
      await sleep(config.lifecycle.drain_delay);
      server.stopAccepting();
      const finished = await server.waitForInFlight(config.lifecycle.grace);
      if (!finished) log.warn({ in_flight: server.requestsInFlight }, 'grace period over: closing the remaining connections');
      server.closeAllConnections();
      health.stop();
      await runtime.upstreams.close();
      await backends.close();
      admin.closeAllConnections();
      await new Promise((resolve) => admin.close(resolve));
      log.info('stopped');
    })());

  return { port, adminPort, store, log, shutdown };
}
