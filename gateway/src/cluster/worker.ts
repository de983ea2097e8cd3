import cluster from 'node:cluster';
import type { Config } from '../config/schema';
import { createLogger } from '../log';
import { startGateway } from '../main';
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
  const gateway = await startGateway(config, log, { configFile, worker: true });
  tell({ type: 'sluice:listening', port: gateway.port });

  let told: string | null | undefined;
  const reportReadiness = () => {
    const reason = gateway.notReadyReason();
    if (reason !== told) tell({ type: 'sluice:readiness', reason: (told = reason) });
  };
  reportReadiness();
  setInterval(reportReadiness, READINESS_CHECK_MS).unref();

  const drain = () => {
    const done = gateway.shutdown().then(() => process.exit(0));
    reportReadiness(); // draining from now on
    return done;
  };
  process.on('message', (message: unknown) => {
    if (!isOurs<PrimaryMessage>(message)) return;
    if (message.type === 'sluice:reload') gateway.reload();
    else if (message.type === 'sluice:drain') void drain();
    else if (message.type === 'sluice:metrics') {
      void registry.getMetricsAsJSON().then((metrics) => tell({ type: 'sluice:metrics', id: message.id, metrics }));
    }
  });
  // Ctrl-C in a terminal signals the whole process group: drain as the primary asks the others to.
  process.once('SIGTERM', () => void drain());
  process.once('SIGINT', () => void drain());
  // A hang-up reaches the primary too, which tells every worker to reload once.
  process.on('SIGHUP', () => undefined);
}
