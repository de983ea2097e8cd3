import { formatWindow, parseByteSize, parseDuration } from '../../src/config/duration';

describe('parseDuration', () => {
  test.each<[string, number]>([
    ['500ms', 500],
    ['1s', 1_000],
    ['30s', 30_000],
    ['1m', 60_000],
    ['90m', 5_400_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['7d', 604_800_000],
  ])('%s → %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each(['', '0s', '0ms', '01m', '1', '60', '1.5s', '-1s', '+1s', '1 m', ' 1m', '1m ', '1M', '1w', '1ms1', 'ms', '1e3ms', '99999999999999999d'])(
    '%p is not a duration',
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );
});

describe('formatWindow', () => {
  test.each<[number, string]>([
    [60_000, '1 minute'],
    [120_000, '2 minutes'],
    [1_000, '1 second'],
    [3_600_000, '1 hour'],
    [7_200_000, '2 hours'],
    [86_400_000, '1 day'],
    [172_800_000, '2 days'],
    [90_000, '90 seconds'],
    [5_400_000, '90 minutes'],
    [500, '500 milliseconds'],
    [1, '1 millisecond'],
    [1_500, '1500 milliseconds'],
  ])('%d ms → %p', (ms, text) => {
    expect(formatWindow(ms)).toBe(text);
  });

  test('round-trips every duration unit', () => {
    expect(formatWindow(parseDuration('1m')!)).toBe('1 minute');
    expect(formatWindow(parseDuration('36h')!)).toBe('36 hours');
  });
});

describe('parseByteSize', () => {
  test.each<[number | string, number]>([
    [0, 0],
    [1024, 1024],
    ['0', 0],
    ['16384', 16_384],
    ['100B', 100],
    ['512KB', 524_288],
    ['512KiB', 524_288],
    ['10MB', 10_485_760],
    ['10MiB', 10_485_760],
    ['1GB', 1_073_741_824],
    ['1GiB', 1_073_741_824],
    ['2mb', 2_097_152],
  ])('%p → %d bytes', (value, bytes) => {
    expect(parseByteSize(value)).toBe(bytes);
  });

  test.each<number | string>([-1, 1.5, Number.NaN, Infinity, '', '-1', '1.5MB', '10 MB', 'MB', '10TB', '10XB', '10constructor', ' 1'])(
    '%p is not a byte size',
    (value) => {
      expect(parseByteSize(value)).toBeUndefined();
    },
  );
});
