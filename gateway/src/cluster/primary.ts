import { AggregatorRegistry } from 'prom-client';
import type { Logger } from 'pino';
import { requestClientAddress, TrustedProxies } from '../http/client-address';
import { connectKeyStore, openKeyApiBackends } from '../backends';
import type { Config } from '../config/schema';
import { watchFiles } from '../config/watch';
import { tlsFilePaths } from '../config/tls-files';
import { prepareRenewal } from '../http/tls-listener';
import { createLogger } from '../log';
import { closeAdmin, createAdmin, listenAdmin, tryReload } from '../main';
import { configReloads, registry } from '../metrics/registry';
import { WorkerPool } from './pool';

// After lifecycle.drain_delay + grace, a worker has this long to close its Redis clients and exit.
const DRAIN_MARGIN_MS = 5_000;

/**
 * The replica's metrics: the primary's own (the admin API's envelopes, reloads, its process) and every
 * worker's, added up as each metric declares (metrics/registry.ts). The primary leaves out its 'min'
 * gauges: it does not do their job (it hears no key events), so its 0 would hide the workers' 1.
 */
async function replicaMetrics(pool: WorkerPool): Promise<string> {
  const own = (await registry.getMetricsAsJSON()).filter((metric) => metric.aggregator !== 'min');
  const workers = await pool.collectMetrics();
  return AggregatorRegistry.aggregate([own, ...workers]).metrics();
}

/**
 * The primary of `serve --workers N`: forks the workers, which share the public port, and serves the
 * admin port itself. The key API runs on Redis clients of its own (the primary is a replica of the key
 * store, not of the request path). Reload (SIGHUP, file change) is checked here, then every worker
 * re-reads the file; SIGTERM drains every worker and exits when all have.
 */
export async function runPrimary(configFile: string, initial: Config, size: number): Promise<void> {
  let config = initial;
  const log: Logger = createLogger(config.log.level).child({ role: 'primary' });
  registry.setDefaultLabels(config.metrics.default_labels);
  const keyApi = openKeyApiBackends(config, log);
  await connectKeyStore(keyApi.keyStore, log);

  const pool = new WorkerPool(size, log);
  let port: number;
  try {
    port = await pool.start();
  } catch (err) {
    log.error({ err: (err as Error).message }, 'a worker failed to start: stopping');
    await keyApi.close();
    process.exit(1);
  }

  let trustedProxies = new TrustedProxies(config.trusted_proxies); // replaced on reload, as in a worker's runtime
  const admin = createAdmin(config, keyApi, {
    currentConfig: () => config,
    readiness: { notReadyReason: () => pool.notReadyReason() },
    clientAddress: (req) => requestClientAddress(req, trustedProxies),
    log,
    metrics: () => replicaMetrics(pool),
  });
  const adminPort = await listenAdmin(admin, config);
  log.info(
    { host: config.listen.host, port, admin_host: config.admin.host, admin_port: adminPort, store: 'redis', workers: size },
    'sluice listening',
  );

  const reload = () => {
    const next = tryReload(configFile, log, (next) => prepareRenewal(admin, next.admin.tls)()); // a renewed admin certificate
    if (!next) return; // the workers keep theirs too
    config = next;
    trustedProxies = new TrustedProxies(next.trusted_proxies);
    log.level = next.log.level;
    configReloads.inc({ result: 'ok' });
    pool.broadcast({ type: 'sluice:reload' });
    log.info({ workers: size }, 'config reloaded; every worker reloads it');
  };
  process.on('SIGHUP', reload);
  // The config file and the certificate files it names (a renewed certificate needs no SIGHUP).
  const stopWatching = watchFiles(() => [configFile, ...tlsFilePaths(config)], reload);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    stopWatching();
    const { drain_delay, grace } = initial.lifecycle; // restart-only: what the workers started with
    log.info({ signal, drain_delay_ms: drain_delay }, 'shutdown requested: every worker drains; readiness is now false');
    const clean = await pool.drain(drain_delay + grace + DRAIN_MARGIN_MS);
    await closeAdmin(admin);
    await keyApi.close();
    log.info({ clean }, 'stopped');
    process.exit(clean ? 0 : 1);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
