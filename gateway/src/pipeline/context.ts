import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { GatewayError } from '../errors/envelope';
import type { CompiledRoute } from '../routing/route-table';
import type { Runtime } from '../runtime';
import type { ApiKeyRecord } from '../keys/types';
import type { RequestAbort } from './abort';

/** Where the answer goes: a normal response, or the raw socket of a WebSocket upgrade. */
export type Reply =
  | { kind: 'http'; res: ServerResponse }
  /** `upstream` is set once the upgrade is spliced to the upstream's socket. */
  | { kind: 'upgrade'; socket: Duplex; head: Buffer; upstream?: Duplex };

/** A caller without a key: counted in the anonymous tier under its address's subject (ratelimit/anonymous.ts). */
export interface AnonymousCaller {
  readonly tier: string;
  /** Its subject (`anon:<address>`), where a keyed caller has its key id. */
  readonly id: string;
}

/** One request's state as it moves down the pipeline; each step reads what earlier steps set. */
export interface RequestContext {
  readonly req: IncomingMessage;
  readonly reply: Reply;
  readonly runtime: Runtime;
  readonly startedAt: number;
  /** Aborted when the client goes away, so upstream work stops too (or with one of the reasons below). */
  readonly abort: RequestAbort;
  requestId: string;
  clientAddress: string;
  path: string;
  query: string;
  route?: CompiledRoute;
  apiKey?: string;
  /** The key's record; unset for an anonymous caller. */
  consumer?: ApiKeyRecord;
  /** Set instead of `consumer` for a caller without a key on an auth: none / optional route. */
  anonymous?: AnonymousCaller;
  /** Headers every response to this request carries, success or error (e.g. rate-limit headers). */
  responseHeaders: Record<string, string>;
  /**
   * Set while the request holds a concurrency slot: gives it back. The answer's last bytes wait for
   * it, so a client that sends its next request once this one is answered finds the slot free.
   */
  giveBackSlot?: () => void | Promise<void>;
  upstreamTarget?: string;
  status?: number;
  error?: GatewayError;
  /** Set by a step that answered the request itself (a CORS preflight): the rest is skipped. */
  handled?: boolean;
}

/** Abort reasons other than the client leaving: the request is still answered, with this error. */
export const UPSTREAM_TIMED_OUT = Symbol('upstream timed out'); // the route's timeout passed first: 504 (408, 503: proxy.ts)
export const BODY_MALFORMED = Symbol('request body malformed'); // node's parser refused the body mid-way: 400
export const BODY_STALLED = Symbol('request body stalled'); // no body bytes for listen.body_timeout: 408

/** Whether the request was aborted because the client went away: nobody is left to answer. */
export function clientWentAway(signal: RequestAbort): boolean {
  return signal.aborted && signal.reason !== UPSTREAM_TIMED_OUT && signal.reason !== BODY_MALFORMED && signal.reason !== BODY_STALLED;
}

/**
 * Whom the request counts against (its limits, its share of upstream connections) and in which tier:
 * the key's record (its account and own limits with it), or the anonymous caller. Known from the
 * identify / authenticate steps on.
 */
export function countedCaller(ctx: RequestContext): Pick<ApiKeyRecord, 'id' | 'tier' | 'account' | 'limits'> {
  return ctx.consumer ?? ctx.anonymous!;
}

export type Step = (ctx: RequestContext) => void | Promise<void>;
