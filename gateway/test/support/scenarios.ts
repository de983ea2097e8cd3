import { Agent, request } from 'undici';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from './gateway';
import { startUpstream, type TestUpstream } from './upstream';

// Several gateway replicas on one Redis deployment, one key, a burst of concurrent requests spread
// round-robin over the replicas; what reached the upstream and what each client got back.

export const LIMIT = 50;
export const WINDOW = '10s';
/** The key's one window; the defaults are the replica suite's. */
export interface BurstTier {
  limit: number;
  windowSeconds: number;
  /** store.timeout_ms of every replica */
  timeoutMs: number;
}
const DEFAULT_TIER: BurstTier = { limit: LIMIT, windowSeconds: 10, timeoutMs: 1000 };
const KEY = 'sk_test_replicas_000000000000';

export interface BurstOutcome {
  reachedUpstream: number;
  /** When each admitted request reached the upstream (Date.now()), in order. */
  arrivals: number[];
  statuses: Record<number, number>;
  /** Refusals whose body and headers are not the exact 429 contract. */
  malformed429: string[];
  /** Any answer that is neither a success nor a valid envelope. */
  invalid: string[];
  fallbackEngaged: number;
}

export interface Replicas {
  gateways: TestGateway[];
  upstream: TestUpstream;
  tier: BurstTier;
  /** `total` requests, all at once, or spread evenly over `spreadMs`; `during` runs alongside. */
  burst(total: number, options?: { spreadMs?: number; during?: () => Promise<void> }): Promise<BurstOutcome>;
  stop(): Promise<void>;
}


export async function metricValue(gateway: TestGateway, name: string): Promise<number> {
  const res = await request(`${gateway.adminUrl}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

export async function startReplicas(
  redisSettings: Record<string, unknown>,
  count = 3,
  extra: Record<string, unknown> = {},
  tier: BurstTier = DEFAULT_TIER,
): Promise<Replicas> {
  const upstream = await startUpstream();
  const configFile = writeConfig(
    baseConfig({
      store: { redis: redisSettings, timeout_ms: tier.timeoutMs },
      tiers: { burst: { limits: [{ requests: tier.limit, per: `${tier.windowSeconds}s` }], scopes: ['*'] } },
      upstreams: { app: { targets: [upstream.url] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      keys: [{ name: 'burst', tier: 'burst', key: KEY }],
      ...extra,
    }),
  );
  const gateways = await Promise.all(Array.from({ length: count }, () => startGateway(configFile)));
  const agent = new Agent({ connections: 1000, pipelining: 1 });
  const windowLabel = tier.windowSeconds === 60 ? '1 minute' : `${tier.windowSeconds} seconds`;

  const burst = async (total: number, { spreadMs = 0, during }: { spreadMs?: number; during?: () => Promise<void> } = {}): Promise<BurstOutcome> => {
    upstream.reset();
    const statuses: Record<number, number> = {};
    const malformed429: string[] = [];
    const invalid: string[] = [];
    const duringPromise = during?.();
    await Promise.all(
      Array.from({ length: total }, async (_, i) => {
        const gateway = gateways[i % gateways.length];
        if (spreadMs > 0) await new Promise((resolve) => setTimeout(resolve, (i * spreadMs) / total));
        try {
          const res = await request(`${gateway.url}/ok`, { headers: { 'x-api-key': KEY }, dispatcher: agent });
          const text = await res.body.text();
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          if (res.statusCode === 200) return;
          let body: any;
          try {
            body = JSON.parse(text);
          } catch {
            invalid.push(`${res.statusCode} ${text.slice(0, 80)}`);
            return;
          }
          if (typeof body?.error?.code !== 'string' || typeof body.error.message !== 'string') invalid.push(`${res.statusCode} ${text.slice(0, 80)}`);
          if (res.statusCode === 429) {
            const retryAfter = Number(res.headers['retry-after']);
            // The limit is the key's, or each replica's share of it while a replica limits without Redis.
            const limit = Number(res.headers['x-ratelimit-limit']);
            const ok =
              body.error.code === 'rate_limit_exceeded' &&
              (limit === tier.limit || limit === Math.floor(tier.limit / gateways.length)) &&
              res.headers['x-ratelimit-remaining'] === '0' &&
              Number(res.headers['x-ratelimit-reset']) > Date.now() / 1000 &&
              retryAfter >= 1 &&
              retryAfter <= tier.windowSeconds + 1 &&
              body.error.message === `API rate limit exceeded. Please wait ${retryAfter} seconds before retrying.` &&
              JSON.stringify(body.error.details) === JSON.stringify({ limit, window: windowLabel, retry_after: retryAfter });
            if (!ok) malformed429.push(JSON.stringify({ headers: res.headers, body }));
          }
        } catch (err) {
          invalid.push(`transport: ${(err as Error).message}`);
        }
      }),
    );
    await duringPromise;
    const engaged = await Promise.all(gateways.map((g) => metricValue(g, 'sluice_ratelimit_fallback_engaged_total').catch(() => NaN)));
    return {
      reachedUpstream: upstream.requests.length,
      arrivals: upstream.requests.map((r) => r.at).sort((a, b) => a - b),
      statuses,
      malformed429,
      invalid,
      fallbackEngaged: engaged.reduce((a, b) => a + b, 0),
    };
  };

  return {
    gateways,
    upstream,
    tier,
    burst,
    stop: async () => {
      await agent.close();
      await Promise.all(gateways.map((g) => g.stop()));
      await upstream.close();
      removeConfig(configFile);
    },
  };
}
