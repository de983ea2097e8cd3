// Durations, windows and byte sizes as written in the YAML config.

const DURATION_UNITS_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** `500ms`, `30s`, `1m`, `1h`, `1d` → milliseconds; anything else (zero, decimals, spaces) → undefined. */
export function parseDuration(text: string): number | undefined {
  const match = /^([1-9][0-9]*)(ms|s|m|h|d)$/.exec(text);
  if (!match) return undefined;
  const ms = Number(match[1]) * DURATION_UNITS_MS[match[2]];
  return Number.isSafeInteger(ms) ? ms : undefined;
}

// Largest first, so formatWindow picks the biggest unit that divides exactly.
const WINDOW_UNITS: ReadonlyArray<[name: string, ms: number]> = [
  ['day', 86_400_000],
  ['hour', 3_600_000],
  ['minute', 60_000],
  ['second', 1_000],
  ['millisecond', 1],
];

/** Human text for a window, as used in 429 bodies: 60000 → "1 minute", 90000 → "90 seconds". */
export function formatWindow(ms: number): string {
  for (const [name, size] of WINDOW_UNITS) {
    if (ms !== 0 && ms % size === 0) {
      const count = ms / size;
      return `${count} ${name}${count === 1 ? '' : 's'}`;
    }
  }
  return `${ms} milliseconds`;
}

// Binary multiples whichever spelling is used: 1 MB = 1 MiB = 1048576 bytes.
const SIZE_UNITS = new Map<string, number>([
  ['b', 1],
  ['kb', 1024],
  ['kib', 1024],
  ['mb', 1024 ** 2],
  ['mib', 1024 ** 2],
  ['gb', 1024 ** 3],
  ['gib', 1024 ** 3],
]);

/** A non-negative integer (or string of digits), or `512KB`, `10MB`, `1GiB` → bytes; else undefined. */
export function parseByteSize(value: number | string): number | undefined {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }
  const match = /^([0-9]+)([A-Za-z]+)?$/.exec(value);
  if (!match) return undefined;
  const multiplier = match[2] === undefined ? 1 : SIZE_UNITS.get(match[2].toLowerCase());
  if (multiplier === undefined) return undefined;
  const bytes = Number(match[1]) * multiplier;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
