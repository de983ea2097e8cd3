import type Redis from 'ioredis';
import type { Logger } from 'pino';
import type { RedisConfig } from '../config/schema';
import { keyEventsSubscribed } from '../metrics/registry';
import type { KeyChangeListener, KeyEvents } from './events';
import { StoreUnavailableError } from '../redis/errors';
import { createSubscriberClient, type RedisClient } from '../redis/client';

/**
 * Key changes over Redis pub/sub: `<prefix>key-events`, message = key id. Every replica subscribes on
 * a connection of its own and drops that key from its cache. Pub/sub delivers only to those listening
 * at that moment, so whenever the subscription is (re)established the whole cache is expired: nothing
 * missed while away can linger.
 */
export class RedisKeyEvents implements KeyEvents {
  readonly channel: string;
  private subscriber?: Redis;
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

  private connect(attempt: number): void {
    const subscriber = createSubscriberClient(this.settings, this.timeoutMs, attempt);
    this.subscriber = subscriber;
    subscriber.on('error', () => undefined); // reconnects follow; the main client reports outages
    subscriber.on('message', (_channel: string, id: string) => this.listener?.invalidate(id));
    subscriber.on('ready', () => {
      subscriber.subscribe(this.channel).then(
        () => this.onSubscribed(),
        () => subscriber.disconnect(true), // try again on a fresh connection
      );
    });
    subscriber.on('close', () => this.onLost());
    // Only a Cluster node given up on ends on its own: move on to the next node.
    subscriber.on('end', () => {
      if (!this.closed) this.connect(attempt + 1);
    });
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
    this.subscriber?.disconnect();
  }
}
