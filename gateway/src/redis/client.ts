import { createHash } from 'node:crypto';
import {
  createClient,
  createCluster,
  createSentinel,
  ErrorReply,
  type RedisClientOptions,
  type RedisClientType,
  type RedisClusterType,
  type RedisSentinelType,
} from '@redis/client';
import { parseHostPort, type Config } from '../config/schema';

// node-redis (@redis/client 5): it costs less CPU per call than ioredis did for the request path's
// EVALSHA (load-tests/RESULTS.md, "Redis clients"), and it writes every command of one loop turn in one go.
export type RedisClient = RedisClientType | RedisClusterType | RedisSentinelType;
export type RedisSettings = NonNullable<NonNullable<Config['store']['redis']>>;

/** A node from the config (`host:port`, `[v6]:port`), validated there: one parser for both. */
function hostPort(address: string): { host: string; port: number } {
  return parseHostPort(address)!;
}

/** Reconnects about once a second at most. */
const reconnectStrategy = (attempt: number) => Math.min((attempt + 1) * 100, 1000);

/** How each connection to a Redis server is made. No offline queue: a call while Redis is away fails at once. */
function nodeOptions(settings: RedisSettings, timeoutMs: number): RedisClientOptions {
  const options: RedisClientOptions = {
    disableOfflineQueue: true,
    socket: { connectTimeout: Math.max(timeoutMs, 1000), reconnectStrategy },
  };
  if (settings.password !== undefined) options.password = settings.password;
  if (settings.db !== undefined && !settings.cluster) options.database = settings.db;
  return options;
}

/**
 * One client for any topology, connecting in the background (and again whenever it loses Redis) until
 * closed. Calls are bounded by RedisDeadline on the request path; node-redis itself has no default timeout.
 * `offlineQueue`: calls made while it connects wait instead of failing (the deadline's own PINGs).
 */
export function createRedisClient(settings: RedisSettings, { timeoutMs, offlineQueue = false }: { timeoutMs: number; offlineQueue?: boolean }): RedisClient {
  const node = { ...nodeOptions(settings, timeoutMs), disableOfflineQueue: !offlineQueue };
  let client: RedisClient;
  if (settings.cluster) {
    client = createCluster({ rootNodes: settings.cluster.nodes.map((address) => ({ socket: hostPort(address) })), defaults: node });
  } else if (settings.sentinel) {
    client = createSentinel({
      name: settings.sentinel.name,
      sentinelRootNodes: settings.sentinel.sentinels.map(hostPort),
      nodeClientOptions: node,
      sentinelClientOptions: { socket: node.socket },
      masterPoolSize: 1,
    }) as unknown as RedisSentinelType;
  } else {
    client = createClient({ ...node, url: settings.url }) as RedisClientType;
  }
  keepConnecting(client);
  return client;
}

const closed = new WeakSet<object>();

/**
 * A standalone client retries by itself from its first connect on; a Cluster or Sentinel client gives
 * up when no node answers at first: try again each second until it is closed.
 */
function keepConnecting(client: RedisClient): void {
  const attempt = () => {
    if (closed.has(client)) return;
    client.connect().catch(() => {
      if (!closed.has(client) && !client.isOpen) setTimeout(attempt, 1000).unref();
    });
  };
  attempt();
}

/** Whether the client can send commands now (a Cluster: it knows its slots; it is "open" while it looks). */
export function isReady(client: RedisClient): boolean {
  return isCluster(client) ? client.isOpen && client.masters.length > 0 : client.isReady;
}

export function isCluster(client: RedisClient): client is RedisClusterType {
  return 'masters' in client;
}

/** Resolves once the client can take commands, or rejects after `waitMs`. */
export async function waitUntilReady(client: RedisClient, waitMs: number): Promise<void> {
  const until = Date.now() + waitMs;
  while (!isReady(client)) {
    if (Date.now() >= until) throw new Error(`Redis did not become ready within ${waitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Closes the client: waits (briefly) for the replies still due, then drops the connections. */
export async function closeRedisClient(client: RedisClient): Promise<void> {
  closed.add(client);
  if (!client.isOpen) return;
  await Promise.race([client.close().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
  dropConnection(client);
}

/** Closes the client's connections at once, replies still due or not (node-redis throws if already closed). */
export function dropConnection(client: RedisClient): void {
  closed.add(client);
  try {
    if (client.isOpen) client.destroy();
  } catch {
    // closed in the meantime
  }
}

/**
 * A connection of its own to one server: `node` (a Cluster's master), else the server the settings
 * name (a Sentinel client follows the master). Calls made while it connects wait.
 */
export function createNodeClient(settings: RedisSettings, timeoutMs: number, node?: { host: string; port: number }): RedisClient {
  if (node === undefined) return createRedisClient(settings, { timeoutMs, offlineQueue: true });
  const options = nodeOptions(settings, timeoutMs);
  const client = createClient({ ...options, disableOfflineQueue: false, socket: { ...options.socket, host: node.host, port: node.port } }) as RedisClientType;
  keepConnecting(client);
  return client;
}

/**
 * A connection for SUBSCRIBE only (subscriber mode cannot run other commands), connected, with no
 * reconnects of its own: the caller makes a new one when it is lost, and so knows when it was away.
 * `attempt` picks the server: a Cluster's nodes in turn (PUBLISH reaches subscribers on every node);
 * with Sentinel, the master the sentinels (in turn) name.
 */
export async function connectSubscriber(settings: RedisSettings, timeoutMs: number, attempt: number): Promise<RedisClientType> {
  const node = nodeOptions(settings, timeoutMs);
  const socket = { ...node.socket, reconnectStrategy: false as const };
  let client: RedisClientType;
  if (settings.cluster) {
    client = createClient({ ...node, socket: { ...socket, ...hostPort(settings.cluster.nodes[attempt % settings.cluster.nodes.length]) } }) as RedisClientType;
  } else if (settings.sentinel) {
    const master = await sentinelMaster(settings.sentinel, socket, attempt);
    client = createClient({ ...node, socket: { ...socket, ...master } }) as RedisClientType;
  } else {
    client = createClient({ ...node, url: settings.url, socket }) as RedisClientType;
  }
  client.on('error', () => undefined); // the caller watches for the connection's end; the main client reports outages
  await client.connect();
  return client;
}

/** The master's address, as the `attempt`-th sentinel (in turn) names it. */
async function sentinelMaster(sentinel: NonNullable<RedisSettings['sentinel']>, socket: object, attempt: number): Promise<{ host: string; port: number }> {
  const asked = createClient({ socket: { ...socket, ...hostPort(sentinel.sentinels[attempt % sentinel.sentinels.length]) } });
  asked.on('error', () => undefined);
  try {
    await asked.connect();
    const reply = (await asked.sendCommand(['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', sentinel.name])) as [string, string] | null;
    if (!reply) throw new Error(`the sentinels know no master named ${sentinel.name}`);
    return { host: reply[0], port: Number(reply[1]) };
  } finally {
    dropConnection(asked);
  }
}

/** A Lua script, sent by its SHA-1 (EVALSHA) and by its source only when the server does not know it. */
export interface RedisScript {
  readonly source: string;
  readonly sha: string;
}

export function redisScript(source: string): RedisScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * Runs `script` on the server that holds `keys` (all in one slot); arguments go as strings. Sent as a
 * raw command: node-redis' evalSha() wraps the same call in three more promises.
 */
export function runScript<T>(client: RedisClient, script: RedisScript, keys: string[], args: string[]): Promise<T> {
  const command = scriptCommand(script, keys.length);
  for (const key of keys) command.push(key);
  for (const arg of args) command.push(arg);
  return runScriptCommand<T>(client, script, command);
}

/** `EVALSHA <sha> <keyCount>`: the caller pushes the keys, then the arguments (runScriptCommand sends it). */
export function scriptCommand(script: RedisScript, keyCount: number): string[] {
  return ['EVALSHA', script.sha, `${keyCount}`];
}

/** runScript for a command built with scriptCommand: one array less on the request path. */
export function runScriptCommand<T>(client: RedisClient, script: RedisScript, command: string[]): Promise<T> {
  const firstKey = command[3];
  return send<T>(client, firstKey, command).catch((err: Error) => {
    if (!err.message?.startsWith('NOSCRIPT')) throw err;
    command[0] = 'EVAL';
    command[1] = script.source;
    return send<T>(client, firstKey, command);
  });
}

/** One command, to the server that holds `firstKey` (each topology's sendCommand has its own signature). */
function send<T>(client: RedisClient, firstKey: string, command: string[]): Promise<T> {
  if (isCluster(client)) return client.sendCommand<T>(firstKey, false, command);
  if (isSentinel(client)) return client.sendCommand<T>(false, command);
  return client.sendCommand<T>(command);
}

function isSentinel(client: RedisClient): client is RedisSentinelType {
  return 'getMasterNode' in client;
}

/** Whether `err` is a reply of the server (an answer), not a failure to reach it. */
export function isErrorReply(err: unknown): boolean {
  return err instanceof ErrorReply;
}
