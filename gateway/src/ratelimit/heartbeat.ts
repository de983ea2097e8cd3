import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { redisScript, runScript, type RedisClient } from '../redis/client';
import { withinDeadline, type RedisDeadline } from '../redis/deadline';
import { REPLICA_HEARTBEAT } from './scripts';

const SCRIPT = redisScript(REPLICA_HEARTBEAT);

// Every second: replicas started together (a rollout, a scale-up) must see each other before Redis can
// fail, or each one would take the whole limit as its share. One cheap script call a second per replica.
const BEAT_MS = 1_000;
// A replica missing five beats in a row is gone (a stalled event loop for a moment is not).
const LIVENESS_MS = 5_000;

/**
 * Each replica records itself in Redis every second and learns how many replicas are alive,
 * so that, if Redis goes away, it knows its share of every limit (limit ÷ live replicas).
 */
export class ReplicaHeartbeat {
  /** Live replicas as last seen in Redis (this one included); the configured hint until then. */
  liveReplicas: number;
  private readonly id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private timer?: NodeJS.Timeout;
  private previousBeatOk = false;

  constructor(
    private readonly client: RedisClient,
    private readonly key: string,
    replicasHint: number,
    /** Bounds each beat (a frozen Redis would hold it, and the next ones, until the connection dies). */
    private readonly deadline?: RedisDeadline,
  ) {
    this.liveReplicas = replicasHint;
  }

  async beat(): Promise<void> {
    try {
      const count = await withinDeadline(this.deadline, this.key, () => runScript<number>(this.client, SCRIPT, [this.key], [this.id, `${LIVENESS_MS}`]));
      // The first beat after a start or an outage (frozen, restarted empty) sees only the replicas that
      // beat before it, not yet the others: trust the count from the next beat on.
      if (this.previousBeatOk) this.liveReplicas = Math.max(1, count);
      this.previousBeatOk = true;
    } catch {
      // Redis away: keep the last count, which is exactly what the fallback needs.
      this.previousBeatOk = false;
    }
  }

  start(): void {
    void this.beat();
    this.timer = setInterval(() => void this.beat(), BEAT_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.client.zRem(this.key, this.id).catch(() => undefined);
  }
}
