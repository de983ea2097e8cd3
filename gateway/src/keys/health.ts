import type { Logger } from 'pino';
import type { KeyStore } from './types';
import { WAYS_OUT } from './store-init';

export type StoreState = 'ok' | 'unreachable' | 'marker_missing';

/**
 * Watches the key store about once a second: reachable, and still holding its marker. A missing marker
 * means Redis came back empty (or this is the wrong database): the replica reports not-ready and logs
 * loudly, and uncached keys get 503 rather than a flood of false 401s.
 */
export class StoreHealth {
  state: StoreState = 'ok';
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly store: KeyStore,
    private readonly log: Logger,
    /** Called after each periodic check that found the store healthy (the caller does its work once). */
    private readonly onHealthy: () => void = () => undefined,
  ) {}

  async check(): Promise<StoreState> {
    let next: StoreState;
    try {
      next = (await this.store.hasMarker()) ? 'ok' : 'marker_missing';
    } catch {
      next = 'unreachable';
    }
    if (next !== this.state) this.report(next);
    this.state = next;
    return next;
  }

  private report(next: StoreState): void {
    if (next === 'ok') this.log.info('key store is healthy again');
    else if (next === 'unreachable') this.log.warn('key store unreachable: cached keys keep working, uncached keys get 503');
    else {
      this.log.error(
        `KEY STORE MARKER MISSING: Redis lost its data, is the wrong database, or was never initialised. Uncached keys get 503, key changes are refused and this replica is not ready until then. ${WAYS_OUT}`,
      );
    }
  }

  start(intervalMs = 1000): void {
    if (this.store.kind === 'memory') return;
    this.timer = setInterval(() => void this.check().then((state) => state === 'ok' && this.onHealthy()), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
