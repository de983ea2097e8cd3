// How a store call fails, whichever component made it: an outage, or an answer too late to wait for.

/** The store could not answer (unreachable, timed out, or lost its data): never a reason for a 401. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/**
 * Redis is answering, but not this call in time (store.max_wait_ms): the replica or Redis is
 * overloaded, not away. Never a reason for a local decision; the request gets a 503.
 */
export class StoreBusyError extends StoreUnavailableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreBusyError';
  }
}
