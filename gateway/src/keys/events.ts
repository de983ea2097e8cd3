// How a change to a key (revoked, rotated, new tier) reaches every replica's KeyCache.

/** What a replica does when a key changes somewhere: forget what it cached. */
export interface KeyChangeListener {
  invalidate(id: string): void;
  /** Changes may have been missed: check every cached key with the store before using it again. */
  expireAll(): void;
}

export interface KeyEvents {
  /** Tells every replica, this one included, that a key changed. Called after the change is stored. */
  announce(id: string): Promise<void>;
  /** Delivers changes made anywhere to this replica's cache, from now on. */
  listen(listener: KeyChangeListener): void;
  close(): Promise<void>;
}

/** The embedded store has one replica: announcing a change is telling our own cache. */
export class LocalKeyEvents implements KeyEvents {
  private listener?: KeyChangeListener;

  async announce(id: string): Promise<void> {
    this.listener?.invalidate(id);
  }

  listen(listener: KeyChangeListener): void {
    this.listener = listener;
  }

  async close(): Promise<void> {}
}
