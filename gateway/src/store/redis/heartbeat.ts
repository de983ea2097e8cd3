import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { RedisClient } from './client';
import { REPLICA_HEARTBEAT } from './scripts';

type ScriptedClient = RedisClient & { sluiceHeartbeat(key: string, id: string, livenessMs: number): Promise<number> };

const BEAT_MS = 5_000;
const LIVENESS_MS = 15_000;

/**
 * Each replica records itself in Redis every few seconds and learns how many replicas are alive,
 * so that, if Redis goes away, it knows its share of every limit (limit ÷ live replicas).
 */
export class ReplicaHeartbeat {
  /** Live replicas as last seen in Redis (this one included); the configured hint until then. */
  liveReplicas: number;
  private readonly id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly client: ScriptedClient;
  private timer?: NodeJS.Timeout;

  constructor(
    client: RedisClient,
    private readonly key: string,
    replicasHint: number,
  ) {
    client.defineCommand('sluiceHeartbeat', { numberOfKeys: 1, lua: REPLICA_HEARTBEAT });
    this.client = client as ScriptedClient;
    this.liveReplicas = replicasHint;
  }

  async beat(): Promise<void> {
    try {
      this.liveReplicas = Math.max(1, await this.client.sluiceHeartbeat(this.key, this.id, LIVENESS_MS));
    } catch {
      // Redis away: keep the last count, which is exactly what the fallback needs.
    }
  }

  start(): void {
    void this.beat();
    this.timer = setInterval(() => void this.beat(), BEAT_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.client.zrem(this.key, this.id).catch(() => undefined);
  }
}
