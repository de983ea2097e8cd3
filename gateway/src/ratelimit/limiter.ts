// What the gateway needs from a rate limiter; the Redis and the memory limiter implement it and
// give the same decisions for the same sequence of requests (one algorithm: ratelimit/sliding-window.ts).

/** One window to check and count: at most `limit` units of cost in any rolling `windowMs`. */
export interface WindowSpec {
  /** Names the counter within the subject, e.g. "60000" (tier) or "users:60000" (route). */
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
}

export interface LimitRequest {
  /** Whose quota: the API key's id (stable across rotations). */
  readonly subject: string;
  readonly windows: readonly WindowSpec[];
  readonly cost: number;
}

export interface WindowState {
  readonly limit: number;
  readonly windowMs: number;
  /** Units counted in the window after this decision (this request included when admitted). */
  readonly used: number;
  /** Whether this window alone would have refused the request. */
  readonly blocking: boolean;
  /**
   * Unix ms when the window next admits the request (a blocking window), or when its remaining next
   * grows (a window with room left).
   */
  readonly resetMs: number;
}

/** Going over a limit is a result, not an exception; only store failures throw. */
export interface LimitDecision {
  readonly allowed: boolean;
  /** The limiter's clock (Redis TIME for the Redis limiter), Unix ms. */
  readonly nowMs: number;
  readonly windows: readonly WindowState[];
}

export interface Limiter {
  /**
   * Checks every window and, when all admit, counts the request in all of them, atomically.
   * A cost of 0 counts nothing: a read-only look at the windows (usage reports).
   */
  check(request: LimitRequest): Promise<LimitDecision>;
  close(): Promise<void>;
}
