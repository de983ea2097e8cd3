import { envelopeCode, overLimit } from '../support/steady-load';

// The fault suite's measure of over-admission: checked here on arrivals whose answer is known.

describe('overLimit (worst excess in any rolling window)', () => {
  const every = (fromMs: number, stepMs: number, count: number) => Array.from({ length: count }, (_, i) => fromMs + i * stepMs);

  it('is 0 when no window of the length holds more than the limit', () => {
    // 10 per 1000 ms, evenly spaced: no window of 1000 ms holds more than 10.
    expect(overLimit(every(0, 100, 50), 10, 1000, [], 0)).toEqual({ reachable: 0, fault: 0 });
    expect(overLimit(every(0, 99, 50), 10, 1000, [], 0).reachable).toBe(1); // 11 in some window
  });

  it('counts the worst excess, wherever the window falls', () => {
    const arrivals = [...every(0, 100, 30), 1_505, 1_506, 1_507]; // three extra inside one window
    expect(overLimit(arrivals, 10, 1000, [], 0).reachable).toBe(3);
    // The 100 ms slack shortens the window: 9 regular arrivals in it, plus the 3.
    expect(overLimit(arrivals, 10, 1000, []).reachable).toBe(2);
  });

  it('puts windows that touch a fault interval in their own column', () => {
    const arrivals = [...every(0, 100, 30), 1_505, 1_506, 1_507];
    expect(overLimit(arrivals, 10, 1000, [[1_500, 1_510]], 0)).toEqual({ reachable: 0, fault: 3 });
    // Every window holding the extras reaches back into the fault; one extra later is a reachable excess.
    expect(overLimit([...arrivals, 2_650], 10, 1000, [[1_500, 1_510]], 0)).toEqual({ reachable: 1, fault: 3 });
  });

  it('a whole limit admitted twice in one window (each replica limiting alone) shows', () => {
    expect(overLimit([...every(0, 10, 10), ...every(5, 10, 10)], 10, 1000, []).reachable).toBe(10);
  });
});

describe('envelopeCode', () => {
  const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'x-request-id': 'req_1' };

  it('accepts an envelope whose code matches its status', () => {
    expect(envelopeCode(429, JSON_HEADERS, JSON.stringify({ error: { code: 'rate_limit_exceeded', message: 'x' } }))).toBe('rate_limit_exceeded');
  });

  it.each([
    [502, JSON.stringify({ error: { code: 'rate_limit_exceeded', message: 'x' } })], // wrong status for the code
    [502, JSON.stringify({ error: { code: 'made_up', message: 'x' } })],
    [502, JSON.stringify({ error: { code: 'bad_gateway' } })], // no message
    [502, '<html>Bad Gateway</html>'],
  ])('rejects %s %s', (status, body) => {
    expect(envelopeCode(status, JSON_HEADERS, body)).toBe('INVALID');
  });
});
