import type { Logger } from 'pino';
import type { Config } from './config/schema';
import type { RouteTable } from './routing/route-table';
import type { TrustedProxies } from './proxy/client-address';
import type { Upstreams } from './proxy/upstreams';
import type { KeyCache } from './store/key-cache';

/** Everything a request needs that is built once per config (a reload will swap the whole object). */
export interface Runtime {
  readonly config: Config;
  readonly routes: RouteTable;
  readonly upstreams: Upstreams;
  readonly keys: KeyCache;
  readonly trustedProxies: TrustedProxies;
  readonly log: Logger;
}
