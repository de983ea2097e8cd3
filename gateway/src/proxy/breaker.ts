/**
 * Passive health of one upstream target. Closed: traffic flows, consecutive failures are counted.
 * After `failures` in a row it opens: no traffic for `cooldownMs`. Then half-open: exactly one trial
 * request; its success closes the breaker, its failure opens it for another cooldown.
 */
export class Breaker {
  private consecutiveFailures = 0;
  private openUntil = 0;
  private trialInFlight = false;

  constructor(
    private readonly failures: number,
    private readonly cooldownMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  get state(): 'closed' | 'open' | 'half_open' {
    if (this.openUntil === 0) return 'closed';
    return this.clock() < this.openUntil ? 'open' : 'half_open';
  }

  /** Unix ms when an open breaker lets its trial through (0 when closed). */
  get reopensAt(): number {
    return this.openUntil;
  }

  /** Takes a slot for a request, or says no. A half-open breaker gives out one trial at a time. */
  tryAcquire(): boolean {
    const state = this.state;
    if (state === 'closed') return true;
    if (state === 'open' || this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  success(): void {
    this.consecutiveFailures = 0;
    this.openUntil = 0;
    this.trialInFlight = false;
  }

  failure(): void {
    this.consecutiveFailures++;
    if (this.trialInFlight || this.consecutiveFailures >= this.failures) this.openUntil = this.clock() + this.cooldownMs;
    this.trialInFlight = false;
  }

  /** A request that ended without telling us about the target (client gone): free the trial slot. */
  release(): void {
    this.trialInFlight = false;
  }
}
