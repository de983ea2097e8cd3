import { rateLimitExceeded, rateLimitHeaders, reportedWindow, resetTimes } from '../../src/ratelimit/headers';
import type { LimitDecision, WindowState } from '../../src/ratelimit/limiter';

const NOW = 1_795_000_000_250; // ms, a quarter second past a whole second
const w = (limit: number, windowMs: number, used: number, blocking: boolean, resetMs: number): WindowState => ({ limit, windowMs, used, blocking, resetMs });

describe('reportedWindow', () => {
  it('on success: the window with the fewest remaining (ties: the later reset)', () => {
    const minute = w(60, 60_000, 10, false, NOW + 50_000);
    const day = w(1000, 86_400_000, 995, false, NOW + 3_600_000);
    expect(reportedWindow({ allowed: true, nowMs: NOW, windows: [minute, day] })).toBe(day);
    const tieA = w(10, 1_000, 5, false, NOW + 500);
    const tieB = w(10, 60_000, 5, false, NOW + 40_000);
    expect(reportedWindow({ allowed: true, nowMs: NOW, windows: [tieA, tieB] })).toBe(tieB);
  });

  it('on refusal: the blocking window with the longest wait, ignoring windows with room', () => {
    const second = w(5, 1_000, 5, true, NOW + 800);
    const hour = w(100, 3_600_000, 100, true, NOW + 1_200_000);
    const day = w(1000, 86_400_000, 100, false, NOW + 80_000_000);
    expect(reportedWindow({ allowed: false, nowMs: NOW, windows: [second, hour, day] })).toBe(hour);
  });
});

describe('resetTimes', () => {
  it('rounds Reset up to the next Unix second and Retry-After up to whole seconds, at least 1', () => {
    expect(resetTimes(w(1, 60_000, 1, true, NOW + 30_000), NOW)).toEqual({ resetSeconds: 1_795_000_031, retryAfter: 31 });
    expect(resetTimes(w(1, 1_000, 1, true, NOW + 10), NOW)).toEqual({ resetSeconds: 1_795_000_001, retryAfter: 1 });
  });
});

describe('rateLimitHeaders', () => {
  const decision: LimitDecision = {
    allowed: false,
    nowMs: NOW,
    windows: [w(100, 60_000, 100, true, NOW + 59_750), w(1000, 86_400_000, 400, false, NOW + 1_000_000)],
  };

  it('sends X-RateLimit-* and Retry-After for the blocking window', () => {
    expect(rateLimitHeaders(decision, false)).toEqual({
      'x-ratelimit-limit': '100',
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': '1795000060',
      'retry-after': '60',
    });
  });

  it('adds the IETF draft headers when switched on', () => {
    const headers = rateLimitHeaders(decision, true);
    expect(headers['ratelimit-policy']).toBe('"1m";q=100;w=60, "1d";q=1000;w=86400');
    expect(headers.ratelimit).toBe('"1m";r=0;t=60');
  });

  it('sends no Retry-After on success', () => {
    const ok: LimitDecision = { allowed: true, nowMs: NOW, windows: [w(10, 1_000, 3, false, NOW + 900)] };
    expect(rateLimitHeaders(ok, false)).toEqual({ 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '7', 'x-ratelimit-reset': '1795000002' });
  });
});

describe('rateLimitExceeded', () => {
  it('builds exactly the seed 429 body', () => {
    const decision: LimitDecision = { allowed: false, nowMs: NOW, windows: [w(100, 60_000, 100, true, NOW + 59_750)] };
    const err = rateLimitExceeded(decision);
    expect(err.status).toBe(429);
    expect(err.message).toBe('API rate limit exceeded. Please wait 60 seconds before retrying.');
    expect(err.options.details).toEqual({ limit: 100, window: '1 minute', retry_after: 60 });
  });
});
