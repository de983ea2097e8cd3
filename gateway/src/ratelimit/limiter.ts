// What the gateway needs from a rate limiter; the Redis and the memory limiter implement it and
// give the same decisions for the same sequence of requests (one algorithm: ratelimit/sliding-window.ts).

/** One window to check and count: at most `limit` units of cost in any rolling `windowMs`. */
export interface WindowSpec {
  /** Names the counter within the subject, e.g. "60000" (tier) or "users:60000" (route). */
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
  /** Counts like any window but never refuses: the decision reports what it would have refused. */
  readonly shadow?: boolean;
  /** Counted for the request's account (shared by its keys) instead of for the key. */
  readonly perAccount?: boolean;
}

export type CalendarPeriod = 'day' | 'week' | 'month';

/** A plain counter per calendar period in UTC (week: ISO, from Monday), reset at each boundary. */
export interface QuotaSpec {
  readonly limit: number;
  readonly period: CalendarPeriod;
  readonly shadow?: boolean;
}

/**
 * Requests in flight at once: a slot (a lease, see ratelimit/slots.ts) is taken with the windows and
 * given back when the answer ends.
 */
export interface ConcurrencySpec {
  readonly limit: number;
  /** How long a slot lives unless renewed: bounds how long a dead replica's slots stay taken. */
  readonly leaseMs: number;
  readonly shadow?: boolean;
}

/** Slots in flight for the request's subject (this request's own included once admitted). */
export interface ConcurrencyState {
  readonly limit: number;
  readonly inFlight: number;
  /** Whether no slot was free: this limit alone would have refused the request. */
  readonly blocking: boolean;
  readonly shadow?: boolean;
}

/*
 * One request's limits, decided in one call. Windows come first; further kinds are "steps" after
 * them (today the calendar quota), each with one counter of its own, checked before anything is
 * counted and counted only when the whole request is admitted. A new kind (a concurrency slot) is
 * one more optional field here and one more step in the script (see ratelimit/scripts.ts).
 */
export interface LimitRequest {
  /** Whose quota: the API key's id (stable across rotations). */
  readonly subject: string;
  /** The key's account: its counters' Cluster slot, and the subject of perAccount windows. */
  readonly account?: string;
  readonly windows: readonly WindowSpec[];
  readonly quota?: QuotaSpec;
  /** Only for tiers with a concurrency limit: others send no slot key or arguments. */
  readonly concurrency?: ConcurrencySpec;
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
  /** A shadow window or quota: never refuses, sends no headers. */
  readonly shadow?: boolean;
  /** Set on the quota's state (the last of `windows`): its period; windowMs is the current period's length. */
  readonly calendar?: CalendarPeriod;
}

/** Going over a limit is a result, not an exception; only store failures throw. */
export interface LimitDecision {
  readonly allowed: boolean;
  /** The limiter's clock (Redis TIME for the Redis limiter), Unix ms. */
  readonly nowMs: number;
  /** One state per window of the request, in order, then the quota's when there is one. */
  readonly windows: readonly WindowState[];
  /** Set when the request had a concurrency limit. */
  readonly concurrency?: ConcurrencyState;
  /**
   * Set when an admitted request took a slot: gives it back (once; later calls do nothing). The
   * caller calls it when the answer ends, whatever the way; a promise settles (never rejects) once
   * the slot is free for the next request.
   */
  readonly release?: () => void | Promise<void>;
}

export interface Limiter {
  /**
   * Checks every window and, when all admit, counts the request in all of them, atomically.
   * A cost of 0 counts nothing: a read-only look at the windows (usage reports).
   */
  check(request: LimitRequest): Promise<LimitDecision>;
  close(): Promise<void>;
}
