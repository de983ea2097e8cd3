import { FailedTokenGuard } from '../../src/admin/failed-token-guard';
import { GatewayError } from '../../src/errors/envelope';

// The admin token's brute-force guard on its own, with short real durations (no fake timers).

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('FailedTokenGuard', () => {
  it('blocks an address once it reaches max_attempts within `per`, for block_for, with Retry-After in whole seconds', async () => {
    const guard = new FailedTokenGuard({ max_attempts: 3, per: 60_000, block_for: 1500 });
    for (let i = 0; i < 2; i++) {
      guard.recordFailure('10.0.0.1');
      expect(guard.refusal('10.0.0.1')).toBeUndefined();
    }
    guard.recordFailure('10.0.0.1');
    const refusal = guard.refusal('10.0.0.1');
    expect(refusal).toBeInstanceOf(GatewayError);
    expect(refusal).toMatchObject({ status: 429, code: 'too_many_failed_attempts' });
    expect(refusal!.options.headers).toEqual({ 'retry-after': '2' });
    expect(refusal!.options.details).toEqual({ retry_after: 2 });
    expect(guard.refusal('10.0.0.2')).toBeUndefined(); // per address
    await sleep(1600);
    expect(guard.refusal('10.0.0.1')).toBeUndefined();
    // After the block the count starts afresh.
    guard.recordFailure('10.0.0.1');
    expect(guard.refusal('10.0.0.1')).toBeUndefined();
  });

  it('forgets failures older than `per`: slow guessing is not blocked', async () => {
    const guard = new FailedTokenGuard({ max_attempts: 2, per: 200, block_for: 60_000 });
    for (let i = 0; i < 4; i++) {
      guard.recordFailure('10.0.0.1');
      await sleep(250);
    }
    expect(guard.refusal('10.0.0.1')).toBeUndefined();
    guard.recordFailure('10.0.0.1');
    guard.recordFailure('10.0.0.1');
    expect(guard.refusal('10.0.0.1')).toBeDefined();
  });

  it('keeps its memory bounded when the addresses rotate, and a flood of one-off failures does not lift a block', () => {
    const guard = new FailedTokenGuard({ max_attempts: 2, per: 60_000, block_for: 60_000 }, 100);
    guard.recordFailure('192.0.2.1');
    guard.recordFailure('192.0.2.1');
    for (let i = 0; i < 10_000; i++) guard.recordFailure(`2001:db8::${i.toString(16)}`);
    expect(guard.size).toBeLessThanOrEqual(200);
    expect(guard.refusal('192.0.2.1')).toBeDefined();
  });
});
