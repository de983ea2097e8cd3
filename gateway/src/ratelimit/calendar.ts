import type { CalendarPeriod } from './limiter';

// Calendar periods in UTC for quotas, in whole days since 1970-01-01. The Lua script computes the
// same from its own clock (scripts.ts CALENDAR_LUA); this copy serves the memory limiter and the
// period lengths shown in headers and usage reports.

const DAY_MS = 86_400_000;

export interface Period {
  /** Unix ms of the period's first instant. */
  startMs: number;
  /** Unix ms of the next period's first instant: when the count resets. */
  endMs: number;
}

export function calendarPeriod(nowMs: number, period: CalendarPeriod): Period {
  const day = Math.floor(nowMs / DAY_MS);
  if (period === 'day') return { startMs: day * DAY_MS, endMs: (day + 1) * DAY_MS };
  if (period === 'week') {
    const sinceMonday = (day + 3) % 7; // 1970-01-01 was a Thursday
    return { startMs: (day - sinceMonday) * DAY_MS, endMs: (day - sinceMonday + 7) * DAY_MS };
  }
  const date = new Date(day * DAY_MS);
  return { startMs: Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1), endMs: Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1) };
}

/** "calendar month": the quota's name in 429 bodies. */
export function calendarWindowName(period: CalendarPeriod): string {
  return `calendar ${period}`;
}
