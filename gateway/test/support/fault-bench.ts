import { request } from 'undici';
import { ADMIN_TOKEN } from './admin';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from './gateway';
import { percentile, recordRow, tally, type ReliabilityRow } from './reliability';
import { overLimit, startSteadyLoad, type Outcome } from './steady-load';
import { startUpstream, type TestUpstream } from './upstream';

/**
 * The fault suite's bench: 3 gateway replicas on one Redis deployment, steady load from 6 clients, and
 * one case at a time — load, inject a fault, remove it, let it settle, measure, record a row.
 *
 * Two keys carry the load: `limited` (40 per 2 s, sent ~4× faster than that, so the limit is always
 * being hit) and `roomy` (a limit never reached). `fresh` is valid but sent by no client: it is never
 * cached, for the case where Redis comes back empty.
 */
export const KEYS = {
  limited: 'sk_fault_limited_7c1e0b9a44d2f6035e8a',
  roomy: 'sk_fault_roomy_3b9f2d7e61a0c4858d1f0',
  fresh: 'sk_fault_fresh_a5d0e7c2194b6f3e8d77a',
};
export const LIMIT = 40;
export const WINDOW_MS = 2000;
const TIER_LIMITS: Record<string, number> = { [KEYS.limited]: LIMIT, [KEYS.roomy]: 1_000_000 };

const CLIENTS = [
  ...[0, 1, 2].map(() => ({ key: KEYS.limited, path: '/limited/ok', perSecond: 30 })),
  ...[0, 1, 2].map(() => ({ key: KEYS.roomy, path: '/roomy/ok', perSecond: 30 })),
];

export interface FaultWindow {
  /** Date.now() when the fault was injected and when it was removed */
  start: number;
  end: number;
  /** Extra criteria and figures of this case */
  checks?: ReliabilityRow['checks'];
  figures?: ReliabilityRow['figures'];
}

export interface CaseOptions {
  name: string;
  /** Injects the fault and removes it (or waits out its effect); resolves with when. */
  inject(bench: FaultBench): Promise<FaultWindow>;
  /** Redis was unreachable or lost its data: windows touching the fault may exceed the limit (fail_open_local). */
  redisFault?: boolean;
  /**
   * Redis is away long enough that every replica must fall back (a freeze, a restart). A failover may
   * be quick enough, or (Cluster) hit masters that hold none of the keys, so that none does.
   */
  fallbackCertain?: boolean;
  /** Replicas killed on purpose (index): not counted as crashes. */
  killed?: number[];
  /** Envelope codes (or 'truncated') allowed while the fault is in place, besides 200 and 429. */
  faultCodes?: string[];
  warmMs?: number;
  settleMs?: number;
}

export interface FaultBench {
  gateways: TestGateway[];
  upstream: TestUpstream;
  configFile: string;
  runCase(options: CaseOptions): Promise<ReliabilityRow>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A password for the Redis of the standalone benches: one more secret that must never show. */
export const REDIS_PASSWORD = 'redis-pw-fault-bench-9d41c7a2e5';

export async function startFaultBench(topology: string, redis: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<FaultBench> {
  const upstream = await startUpstream();
  const configFile = writeConfig(
    baseConfig({
      admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
      store: { redis, timeout_ms: 250, cache: { ttl: '5s' } },
      tiers: {
        limited: { limits: [{ requests: LIMIT, per: `${WINDOW_MS / 1000}s` }], scopes: ['*'] },
        roomy: { limits: [{ requests: TIER_LIMITS[KEYS.roomy], per: '1s' }], scopes: ['*'] },
      },
      upstreams: { app: { targets: [upstream.url], timeout_ms: 1000, breaker: { failures: 5, cooldown: '1s' } } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      keys: Object.entries(KEYS).map(([name, key]) => ({ name, tier: name === 'limited' ? 'limited' : 'roomy', key })),
      ...extra,
    }),
  );
  const gateways = await Promise.all([0, 1, 2].map(() => startGateway(configFile)));
  const urls = gateways.map((g) => g.url);

  const bench: FaultBench = {
    gateways,
    upstream,
    configFile,
    runCase: (options) => runCase(bench, topology, urls, options),
    stop: async () => {
      await Promise.all(gateways.map((g) => g.stop()));
      await upstream.close();
      removeConfig(configFile);
    },
  };
  return bench;
}

/** A bench on a Redis deployment it then owns: stop() stops both. */
export async function benchOn<R extends { stop(): Promise<void> }>(
  topology: string,
  redis: R,
  settings: (redis: R) => Record<string, unknown>,
): Promise<FaultBench & { redis: R }> {
  let bench: FaultBench;
  try {
    bench = await startFaultBench(topology, settings(redis));
  } catch (err) {
    await redis.stop();
    throw err;
  }
  return {
    ...bench,
    redis,
    stop: async () => {
      await bench.stop();
      await redis.stop();
    },
  };
}

async function runCase(bench: FaultBench, topology: string, urls: string[], options: CaseOptions): Promise<ReliabilityRow> {
  const began = Date.now();
  bench.upstream.reset();
  const load = startSteadyLoad(() => urls, CLIENTS);
  await sleep(options.warmMs ?? 2000);
  const fault = await options.inject(bench);
  await sleep(options.settleMs ?? 4000);
  const outcomes = await load.stop();
  const ended = Date.now();

  const statuses: Record<string, number> = {};
  const codes: Record<string, number> = {};
  for (const o of outcomes) {
    tally(statuses, o.status);
    if (o.code) tally(codes, o.code);
  }
  const during = outcomes.filter((o) => o.start >= fault.start && o.start <= fault.end);
  // A replica limiting alone announces its share of the limit: until the last such answer, some
  // admissions were not counted in Redis.
  const local = outcomes.filter((o) => o.limit !== undefined && o.limit !== TIER_LIMITS[keyOf(o)]);
  const lastLocal = Math.max(fault.end, ...local.map((o) => o.end));
  // Three replicas that have seen each other's heartbeats each take a third of the limit.
  const share = Math.floor(LIMIT / 3);
  const wrongShare = local.filter((o) => keyOf(o) === KEYS.limited && o.limit !== share);
  const faults: Array<[number, number]> = options.redisFault ? [[fault.start, lastLocal]] : [];
  const arrivals = bench.upstream.requests.filter((r) => r.url.startsWith('/limited/')).map((r) => r.at);
  const over = overLimit(arrivals, LIMIT, WINDOW_MS, faults);
  const spared = bench.gateways.filter((_, i) => !options.killed?.includes(i));
  const crashed = spared.filter((g) => g.process.exitCode !== null || g.process.signalCode !== null);
  const lastSecond = outcomes.filter((o) => o.start >= ended - 1000);
  const healthy = (o: Outcome) => o.status === 200 || o.code === 'rate_limit_exceeded';
  const allowedDuringFault = new Set(['rate_limit_exceeded', ...(options.faultCodes ?? [])]);
  const allowed = (o: Outcome) => o.status === 200 || allowedDuringFault.has(o.code ?? String(o.status));
  const leaked = await secretsSeen(spared.filter((g) => !crashed.includes(g)));

  const row: ReliabilityRow = {
    suite: 'faults',
    case: `${options.name} (${topology})`,
    sent: outcomes.length,
    statuses,
    codes,
    p99FaultMs: percentile(
      during.map((o) => o.end - o.start),
      99,
    ),
    overLimit: over,
    crashes: crashed.length,
    figures: {
      'fault s': ((fault.end - fault.start) / 1000).toFixed(1),
      'requests during fault': during.length,
      'max latency during fault ms': during.length ? Math.max(...during.map((o) => o.end - o.start)) : 0,
      'answered after a retry on another replica': outcomes.filter((o) => o.retries > 0 && o.status !== 'transport').length,
      'upstream got (limited key)': arrivals.length,
      'answers limited without Redis': local.length,
      ...fault.figures,
    },
    checks: [
      { name: 'no gateway process crashed', pass: crashed.length === 0, detail: crashed.map((g) => `pid ${g.pid}`).join(', ') || undefined },
      {
        name: 'every request answered (after retries on other replicas) with a success or a valid envelope',
        pass: !statuses.transport && !codes.INVALID,
        detail: describe(outcomes.filter((o) => o.status === 'transport' || o.code === 'INVALID')),
      },
      { name: 'no 401 for a valid key', pass: !statuses['401'], detail: statuses['401'] ? `${statuses['401']} × 401` : undefined },
      { name: 'admitted over the limit in any rolling window while Redis was reachable: 0', pass: over.reachable === 0, detail: `worst excess ${over.reachable}` },
      {
        name: `while the fault was in place, only 200${[...allowedDuringFault].map((c) => `, ${c}`).join('')}`,
        pass: during.every(allowed),
        detail: describe(during.filter((o) => !allowed(o))),
      },
      {
        name: 'recovered: the last second of load all 200 or 429 rate_limit_exceeded',
        pass: lastSecond.length > 0 && lastSecond.every(healthy),
        detail: describe(lastSecond.filter((o) => !healthy(o))),
      },
      { name: 'no API key, admin token or Redis password in logs or metrics', pass: leaked.length === 0, detail: leaked.join('; ') || undefined },
      ...(options.redisFault
        ? [
            {
              name: `while Redis was away, each replica limited the key to its share (${share} of ${LIMIT})`,
              pass: (local.length > 0 || !options.fallbackCertain) && wrongShare.length === 0,
              detail: `${local.length} answers limited locally${wrongShare.length ? `, ${wrongShare.length} with another limit, e.g. ${wrongShare[0].limit}` : ''}`,
            },
          ]
        : []),
      ...(fault.checks ?? []),
    ],
    durationMs: ended - began,
  };
  recordRow(row);
  return row;
}

function keyOf(o: Outcome): string {
  return CLIENTS[o.client].key;
}

/** A short sample of unexpected outcomes, for a failed check's detail. */
function describe(outcomes: Outcome[]): string | undefined {
  if (outcomes.length === 0) return undefined;
  const sample = outcomes.slice(0, 5).map((o) => `${o.status}${o.code ? ` ${o.code}` : ''}${o.detail ? ` (${o.detail})` : ''}`);
  return `${outcomes.length} answers, e.g. ${sample.join(', ')}`;
}

/** Which secret (by name, never its value) appears in a gateway's logs or metrics. */
async function secretsSeen(gateways: TestGateway[]): Promise<string[]> {
  const secrets = { ...KEYS, admin_token: ADMIN_TOKEN, redis_password: REDIS_PASSWORD };
  const seen: string[] = [];
  for (const gateway of gateways) {
    const metrics = await request(`${gateway.adminUrl}/metrics`).then((r) => r.body.text());
    const text = `${gateway.output.join('\n')}\n${metrics}`;
    for (const [name, secret] of Object.entries(secrets)) if (text.includes(secret)) seen.push(`${name} in pid ${gateway.pid}`);
  }
  return seen;
}

/** Polls a replica's /readyz: its status and reason. */
export async function readiness(gateway: TestGateway): Promise<{ status: number; reason?: string }> {
  const res = await request(`${gateway.adminUrl}/readyz`);
  const body = (await res.body.json()) as any;
  return { status: res.statusCode, reason: body?.error?.details?.reason };
}
