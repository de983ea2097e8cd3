import { benchOn, REDIS_PASSWORD, type FaultBench } from '../support/fault-bench';
import { startRedis } from '../support/redis';
import { failedChecks } from '../support/reliability';
import type { UpstreamFault } from '../support/upstream';

// Upstream faults and a replica killed, under steady load through 3 replicas on one Redis (which stays
// reachable: no request may be admitted over the limit). Each case records a row of RELIABILITY.md.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const FAULT_MS = 4000;

let bench: FaultBench;
beforeAll(async () => {
  bench = await benchOn('standalone', await startRedis({ destructive: true, password: REDIS_PASSWORD }), (redis) => ({ url: redis.url }));
});
afterAll(() => bench?.stop());

it('upstream refusing connections', async () => {
  const row = await bench.runCase({
    name: 'Upstream refusing connections 4 s',
    faultCodes: ['bad_gateway', 'service_unavailable'],
    inject: async ({ upstream }) => {
      const start = Date.now();
      await upstream.refuse();
      await sleep(FAULT_MS);
      await upstream.listen();
      return { start, end: Date.now() };
    },
  });
  expect(failedChecks(row)).toBe('');
});

const misbehaviours: Array<[string, UpstreamFault, string[]]> = [
  // The answer has begun when the upstream resets: the client sees it cut short, nothing else can be done.
  ['Upstream resetting mid-body 4 s', 'reset', ['truncated', 'bad_gateway', 'service_unavailable']],
  // upstream timeout_ms 1000: 504, then the breaker opens (503).
  ['Upstream hanging 4 s', 'hang', ['gateway_timeout', 'service_unavailable']],
  ['Upstream answering garbage 4 s', 'garbage', ['bad_gateway', 'service_unavailable']],
];

it.each(misbehaviours)('%s', async (name, fault, faultCodes) => {
  const row = await bench.runCase({
    name,
    faultCodes,
    inject: async ({ upstream }) => {
      const start = Date.now();
      upstream.setFault(fault);
      await sleep(FAULT_MS);
      upstream.setFault(null);
      return { start, end: Date.now() };
    },
  });
  expect(failedChecks(row)).toBe('');
});

// Last: the killed replica stays down.
it('a replica killed with SIGKILL: clients retry on the others', async () => {
  const row = await bench.runCase({
    name: 'Replica SIGKILL',
    killed: [1],
    inject: async ({ gateways }) => {
      const start = Date.now();
      gateways[1].process.kill('SIGKILL');
      await gateways[1].exited;
      await sleep(FAULT_MS);
      return { start, end: Date.now() };
    },
  });
  expect(failedChecks(row)).toBe('');
});
