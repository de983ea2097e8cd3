import { LRUCache } from 'lru-cache';
import type { Config } from '../config/schema';
import { tooManyFailedAttempts, type GatewayError } from '../errors/envelope';

type Settings = Config['admin']['failed_tokens'];

// Addresses remembered at most, per table. An attacker rotating addresses evicts the oldest entries
// (least recently used) instead of growing memory; a block is only made by max_attempts failures
// from one address, so blocks live in a table of their own that a flood of one-off failures cannot empty.
const MAX_TRACKED_ADDRESSES = 10_000;

interface Failures {
  count: number;
  /** Date.now() of the first failure of the current `per` window. */
  since: number;
}

/**
 * Brute-force guard of the admin token on /v1/keys: counts wrong tokens per client address, in this
 * replica's memory, and blocks an address once it has sent max_attempts wrong ones within `per`. A
 * blocked address is refused for `block_for` whatever it sends, the right token included: otherwise
 * the block would only slow a guesser down by one request each time it guesses right.
 */
export class FailedTokenGuard {
  private readonly failures: LRUCache<string, Failures>;
  private readonly blockedUntil: LRUCache<string, number>;

  constructor(
    private readonly settings: Settings,
    maxAddresses = MAX_TRACKED_ADDRESSES,
  ) {
    this.failures = new LRUCache({ max: maxAddresses, ttl: settings.per });
    this.blockedUntil = new LRUCache({ max: maxAddresses, ttl: settings.block_for });
  }

  /** The 429 for an address still blocked, else undefined. */
  refusal(address: string): GatewayError | undefined {
    const until = this.blockedUntil.get(address);
    if (until === undefined) return undefined;
    const msLeft = until - Date.now();
    if (msLeft > 0) return tooManyFailedAttempts(msLeft);
    this.blockedUntil.delete(address);
    return undefined;
  }

  /** Counts a wrong token; the one that reaches max_attempts starts the block (it still gets its 401). */
  recordFailure(address: string): void {
    const now = Date.now();
    const current = this.failures.get(address);
    const failures = current && now - current.since < this.settings.per ? current : { count: 0, since: now };
    failures.count++;
    if (failures.count < this.settings.max_attempts) {
      this.failures.set(address, failures, { ttl: this.settings.per - (now - failures.since) });
      return;
    }
    this.failures.delete(address);
    this.blockedUntil.set(address, now + this.settings.block_for);
  }

  /** Addresses remembered now (failing or blocked), for tests of the memory bound. */
  get size(): number {
    return this.failures.size + this.blockedUntil.size;
  }
}
