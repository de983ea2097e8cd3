import type { Logger } from 'pino';
import type { RedisConfig } from '../config/schema';
import { keyEventsSubscribed } from '../metrics/registry';
import type { KeyChangeListener, KeyEvents } from './events';
import { StoreUnavailableError } from '../redis/errors';
import { connectSubscriber, dropConnection, type RedisClient } from '../redis/client';

type Subscriber = Awaited<ReturnType<typeof connectSubscriber>>;

/** Between attempts to subscribe again: about once a second at most. */
const retryDelay = (attempt: number) => Math.min((attempt + 1) * 100, 1000);

/**
 * Key changes over Redis pub/sub: `<prefix>key-events`, message = key id. Every replica subscribes on
 * a connection of its own and drops that key from its cache. Pub/sub delivers only to those listening
 * at that moment, so whenever the subscription is (re)established the whole cache is expired: nothing
 * missed while away can linger.
 */
export class RedisKeyEvents implements KeyEvents {
  readonly channel: string;
  private subscriber?: Subscriber;
  private retry?: NodeJS.Timeout;
  private listener?: KeyChangeListener;
  private subscribed = false;
  private closed = false;

  constructor(
    private readonly client: RedisClient,
    private readonly settings: RedisConfig,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {
    this.channel = `${settings.key_prefix}key-events`;
  }

  async announce(id: string): Promise<void> {
    this.listener?.invalidate(id); // this replica at once, without the round trip
    try {
      await this.client.publish(this.channel, id);
    } catch (err) {
      throw new StoreUnavailableError(`Redis publish failed: ${(err as Error).message}`, { cause: err });
    }
  }

  listen(listener: KeyChangeListener): void {
    this.listener = listener;
    this.connect(0);
  }

  /**
   * Subscribes on a new connection; once it is lost (or cannot be made), tries again on another, the
   * next node in turn. The cache is expired each time the subscription stands again.
   */
  private connect(attempt: number): void {
    if (this.closed) return;
    connectSubscriber(this.settings, this.timeoutMs, attempt).then(
      async (subscriber) => {
        if (this.closed) return dropConnection(subscriber);
        this.subscriber = subscriber;
        let lost = false;
        const onLost = () => {
          if (lost) return;
          lost = true;
          dropConnection(subscriber);
          this.reconnect(attempt + 1);
        };
        subscriber.on('error', () => !subscriber.isOpen && onLost()); // it does not reconnect by itself
        subscriber.on('end', onLost);
        try {
          await subscriber.subscribe(this.channel, (id) => this.listener?.invalidate(id));
          this.onSubscribed();
        } catch {
          onLost(); // try again on a fresh connection
        }
      },
      () => this.reconnect(attempt + 1),
    );
  }

  private reconnect(attempt: number): void {
    this.onLost();
    this.subscriber = undefined;
    if (this.closed) return;
    this.retry = setTimeout(() => this.connect(attempt), retryDelay(attempt));
    this.retry.unref();
  }

  private onSubscribed(): void {
    this.listener?.expireAll();
    keyEventsSubscribed.set(1);
    if (!this.subscribed) this.log.info({ channel: this.channel }, 'listening for key changes; key cache expired');
    this.subscribed = true;
  }

  private onLost(): void {
    keyEventsSubscribed.set(0);
    if (!this.subscribed || this.closed) return;
    this.subscribed = false;
    this.log.warn('lost the key change feed: reconnecting; the key cache is expired once it is back');
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    if (this.subscriber) dropConnection(this.subscriber);
  }
}
