import cluster from 'node:cluster';
import type { Config } from '../config/schema';
import { createLogger } from '../log';
import { startGateway, type RunningGateway } from '../main';
import { registry } from '../metrics/registry';
import { isOurs, type PrimaryMessage, type WorkerMessage } from './messages';

// How often a worker compares its readiness with what it last told the primary (store health changes
// at most once a second; draining is reported at once).
const READINESS_CHECK_MS = 250;

function tell(message: WorkerMessage): void {
  if (process.connected) process.send!(message);
}

/**
 * One worker of `serve --workers N`: a whole gateway on the shared public port (its own Redis clients,
 * heartbeat, key cache and key-event subscription, as a replica of its own), without the admin port and
 * the file watcher, which the primary has. It reports readiness and metrics, and reloads and drains when told.
 */
export async function runWorker(configFile: string, config: Config): Promise<void> {
  const log = createLogger(config.log.level).child({ worker: cluster.worker!.id, pid: process.pid });
  // Listening before the first await (so before any IPC message is read): a drain or reload asked
  // while this worker still starts is not lost, and a scrape meanwhile gets its (empty) metrics.
  let gateway: RunningGateway | undefined;
  const asked = { drain: false, reload: false };
  let told: string | null | undefined;
  const reportReadiness = () => {
    const reason = gateway?.notReadyReason();
    if (reason !== undefined && reason !== told) tell({ type: 'sluice:readiness', reason: (told = reason) });
  };
  const drain = () => {
    asked.drain = true;
    if (!gateway) return;
    void gateway.shutdown().then(() => process.exit(0));
    reportReadiness(); // draining from now on
  };
  const reload = () => {
    if (gateway) gateway.reload();
    else asked.reload = true; // it read the file before this change: read it again once started
  };
  process.on('message', (message: unknown) => {
    if (!isOurs<PrimaryMessage>(message)) return;
    if (message.type === 'sluice:reload') reload();
    else if (message.type === 'sluice:drain') drain();
    else if (message.type === 'sluice:metrics') {
      void registry.getMetricsAsJSON().then((metrics) => tell({ type: 'sluice:metrics', id: message.id, metrics }));
    }
  });
  // Ctrl-C in a terminal signals the whole process group: drain as the primary asks the others to.
  process.once('SIGTERM', drain);
  process.once('SIGINT', drain);
  // A hang-up reaches the primary too, which tells every worker to reload once.
  process.on('SIGHUP', () => undefined);

  gateway = await startGateway(config, log, { configFile, worker: true });
  tell({ type: 'sluice:listening', port: gateway.port });
  reportReadiness();
  setInterval(reportReadiness, READINESS_CHECK_MS).unref();
  if (asked.reload) gateway.reload();
  if (asked.drain) drain();
}
