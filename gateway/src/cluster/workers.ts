import { availableParallelism } from 'node:os';
import type { Config } from '../config/schema';

/** `--workers N|auto`: a whole number ≥ 1, or one per core; undefined when it is neither. */
export function parseWorkers(text: string): number | undefined {
  if (text === 'auto') return availableParallelism();
  return /^[1-9][0-9]{0,3}$/.test(text) ? Number(text) : undefined;
}

/** Why this config cannot run with this many workers, or null. The same check for `serve` and `config check`. */
export function workersProblem(config: Config, workers: number): string | null {
  if (workers > 1 && !config.store.redis) {
    return (
      `--workers ${workers} needs store.redis: with the embedded in-memory store every worker would keep its own keys ` +
      `and its own counters, so each rate limit would be multiplied by ${workers}. Configure store.redis, or run one worker.`
    );
  }
  return null;
}
