import Redis, { Cluster, type RedisOptions } from 'ioredis';
import { parseHostPort, type Config } from '../config/schema';

export type RedisClient = Redis | Cluster;
type RedisSettings = NonNullable<NonNullable<Config['store']['redis']>>;

/** A node from the config (`host:port`, `[v6]:port`), validated there: one parser for both. */
function hostPort(address: string): { host: string; port: number } {
  return parseHostPort(address)!;
}

/**
 * One client for any topology. No offline queue and a bounded command timeout: ioredis' defaults
 * would hold a request for over a minute while Redis is gone. Reconnects are retried about once a second.
 */
export function createRedisClient(
  settings: RedisSettings,
  { timeoutMs, maxWaitMs, unpipelined = [] }: { timeoutMs: number; maxWaitMs: number; /** commands Cluster auto-pipelining must skip */ unpipelined?: string[] },
): RedisClient {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    // A backstop only, after RedisDeadline has judged: ioredis' own timer starts when a pipeline is
    // sent and fires late on a busy loop, so at timeout_ms it would fail calls Redis answered.
    commandTimeout: maxWaitMs + timeoutMs,
    connectTimeout: Math.max(timeoutMs, 1000),
    maxRetriesPerRequest: 0,
    enableAutoPipelining: true,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
  };
  if (settings.password !== undefined) common.password = settings.password;
  if (settings.cluster) {
    return new Cluster(settings.cluster.nodes.map(hostPort), {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      autoPipeliningIgnoredCommands: unpipelined,
      clusterRetryStrategy: (attempt) => Math.min(attempt * 100, 1000),
      redisOptions: common,
    });
  }
  if (settings.db !== undefined) common.db = settings.db;
  if (settings.sentinel) {
    // Subscribe to the sentinels' +switch-master: move to a new master at once, not on the next error.
    return new Redis({ ...common, ...sentinelOptions(settings.sentinel), failoverDetector: true });
  }
  return new Redis(settings.url as string, common);
}

/**
 * A connection for SUBSCRIBE only (subscriber mode cannot run other commands). For a Cluster it is a
 * plain connection to one node (`attempt` picks which): PUBLISH reaches subscribers on every node.
 * It gives up on a Cluster node after a few failed reconnects ('end'), so the caller can move on to
 * the next; a standalone or Sentinel connection retries forever.
 */
export function createSubscriberClient(settings: RedisSettings, timeoutMs: number, attempt: number): Redis {
  const common: RedisOptions = {
    autoResubscribe: false, // the caller subscribes on every 'ready', and knows when it was away
    connectTimeout: Math.max(timeoutMs, 1000),
    maxRetriesPerRequest: 0,
    retryStrategy: (n) => Math.min(n * 100, 1000),
  };
  if (settings.password !== undefined) common.password = settings.password;
  if (settings.cluster) {
    const node = hostPort(settings.cluster.nodes[attempt % settings.cluster.nodes.length]);
    return new Redis({ ...common, ...node, retryStrategy: (n) => (n > 3 ? null : n * 100) });
  }
  if (settings.sentinel) return new Redis({ ...common, ...sentinelOptions(settings.sentinel) });
  return new Redis(settings.url as string, common);
}

/** Which master to ask the sentinels for, and how often to retry them (about once a second at most). */
function sentinelOptions(sentinel: NonNullable<RedisSettings['sentinel']>): RedisOptions {
  return { name: sentinel.name, sentinels: sentinel.sentinels.map(hostPort), sentinelRetryStrategy: (n) => Math.min(n * 100, 1000) };
}

/** Resolves once the client can take commands, or rejects after `waitMs`. */
export function waitUntilReady(client: RedisClient, waitMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error(`Redis did not become ready within ${waitMs} ms`));
    }, waitMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}
