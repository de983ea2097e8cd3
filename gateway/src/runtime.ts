import type { Logger } from 'pino';
import type { Config } from './config/schema';
import type { RouteTable } from './routing/route-table';
import type { TrustedProxies } from './http/client-address';
import type { Upstreams } from './proxy/upstreams';
import type { KeyCache } from './keys/cache';
import type { Limiter } from './ratelimit/limiter';
import type { RateLimitPlan } from './ratelimit/plan';
import type { FailedKeyGuard } from './ratelimit/failed-key-guard';
import type { AccessLog } from './log';

/** Everything a request needs that is built once per config (a reload will swap the whole object). */
export interface Runtime {
  readonly config: Config;
  readonly routes: RouteTable;
  readonly upstreams: Upstreams;
  readonly keys: KeyCache;
  readonly trustedProxies: TrustedProxies;
  readonly rateLimitPlan: RateLimitPlan;
  readonly limiter: Limiter;
  readonly failedKeys: FailedKeyGuard;
  readonly log: Logger;
  /** Access-log lines, in `log`'s format and at its level (see log.ts AccessLog). */
  readonly accessLog: AccessLog;
}
