// The config file's shape (zod v4). Every object is strict, so a typo is an error, not a silent
// default. After validation durations are integer milliseconds and sizes integer bytes, under their
// YAML field names (`per: 1m` → `per: 60000`).
import { isDeepStrictEqual } from 'node:util';
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseByteSize, parseDuration } from './duration';
import { IMPORTED_KEY_PATTERN, IMPORTED_KEY_REQUIREMENT, SCOPE_PATTERN } from './patterns';
import { METHOD_TOKEN, methodProblem, unreceivableMethod } from './methods';
import { tlsFilesProblem, type TlsFiles } from './tls-files';

// ---------------------------------------------------------------------------------------------
// Field helpers. Messages never quote the input: values may come from the environment (secrets).

/** After `${ENV}` interpolation numbers arrive as strings (`port: ${PORT}`), so digits count too. */
function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  const message =
    max !== Number.MAX_SAFE_INTEGER
      ? `expected an integer from ${min} to ${max}`
      : min === 1
        ? 'expected a positive integer'
        : `expected an integer >= ${min}`;
  return z.preprocess(
    (v) => (typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : v),
    z.number({ error: message }).int({ error: message }).min(min, { error: message }).max(max, { error: message }),
  );
}

const boolean = z.preprocess(
  (v) => (v === 'true' ? true : v === 'false' ? false : v),
  z.boolean({ error: 'expected true or false' }),
);

function duration(options: { allowZero?: boolean } = {}) {
  const message = options.allowZero ? 'expected a duration like 5s (or 0s)' : 'expected a duration like 1m';
  return z.string({ error: message }).transform((text, ctx) => {
    const ms = options.allowZero && /^0+(ms|s|m|h|d)$/.test(text) ? 0 : parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
    return ms;
  });
}

function byteSize(min = 0) {
  const message = 'expected a byte size like 16384, 512KB or 10MB';
  return z.union([z.number(), z.string()], { error: message }).transform((value, ctx) => {
    const bytes = parseByteSize(value);
    if (bytes === undefined || bytes < min) {
      ctx.addIssue({ code: 'custom', message: bytes === undefined ? message : `expected at least ${min} bytes` });
      return z.NEVER;
    }
    return bytes;
  });
}

const nonEmpty = z.string().min(1, { error: 'must not be empty' });

/** Names of routes, tiers and upstreams: safe in metric labels, headers and Redis keys. */
const name = z.string().regex(/^[a-z0-9_-]+$/, { error: 'expected a name made of a-z, 0-9, _ and -' });

const scope = z.string().regex(SCOPE_PATTERN, { error: 'expected a scope like users:read, or "*"' });

// A DNS name: letters, digits, dots and dashes, starting and ending with a letter or digit.
const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/;

const host = z.string().refine((h) => isIP(h) !== 0 || HOST_NAME.test(h), {
  error: 'expected an IP address or host name',
});

/** `host:port` or `[ipv6]:port` → parts; undefined when malformed. Used for Sentinel and Cluster nodes. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(text);
  if (!match) return undefined;
  const bracketed = match[1].startsWith('[');
  const hostPart = bracketed ? match[1].slice(1, -1) : match[1];
  const port = Number(match[2]);
  if (port < 1 || port > 65535 || (bracketed && isIP(hostPart) !== 6)) return undefined;
  return { host: hostPart, port };
}

const hostPortList = z
  .array(z.string().refine((t) => parseHostPort(t) !== undefined, { error: 'expected host:port like 127.0.0.1:26379' }))
  .min(1, { error: 'expected at least one host:port' });

/** An IPv4/IPv6 address or CIDR block (`10.0.0.0/8`, `::1/128`). */
export function isIpOrCidr(text: string): boolean {
  const [address, prefix, ...rest] = text.split('/');
  const version = isIP(address);
  if (version === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= (version === 4 ? 32 : 128);
}

/** An http(s) origin with nothing after it; returned normalised (`http://h:1/` → `http://h:1`). */
function httpOrigin(text: string): string | undefined {
  if (!/^https?:\/\//i.test(text) || /[?#\s]/.test(text)) return undefined;
  try {
    const url = new URL(text);
    if (url.username || url.password || url.pathname !== '/') return undefined;
    return url.origin;
  } catch {
    return undefined;
  }
}

function isRedisUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'redis:' || url.protocol === 'rediss:') && url.hostname !== '';
  } catch {
    return false;
  }
}

/** Why a path_prefix is refused, or undefined. These characters would make prefix matching ambiguous. */
function pathPrefixProblem(prefix: string): string | undefined {
  if (!prefix.startsWith('/')) return "must start with '/'";
  // `;` too: routes are matched on segments without their `;parameters`, so a prefix with one never matches.
  for (const forbidden of ['..', '//', '%', '?', '#', ';']) {
    if (prefix.includes(forbidden)) return `must not contain '${forbidden}'`;
  }
  if (/[\s\x00-\x1f\x7f]/.test(prefix)) return 'must not contain spaces or control characters';
  return undefined;
}

const pathPrefix = z.string().transform((prefix, ctx) => {
  const problem = pathPrefixProblem(prefix);
  if (problem) {
    ctx.addIssue({ code: 'custom', message: problem });
    return z.NEVER;
  }
  return prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
});

/** A method as written: a token, case kept (RFC 9110). Which ones a route may name is checked with the whole config (checkMethods). */
const method = z.string().regex(METHOD_TOKEN, { error: 'expected an HTTP method like GET' });

const methods = z
  .array(method)
  .min(1, { error: 'expected at least one method (omit methods to allow any)' })
  .superRefine((list, ctx) => {
    list.forEach((method, i) => {
      if (list.indexOf(method) !== i) ctx.addIssue({ code: 'custom', path: [i], message: 'duplicate method' });
    });
  });

// ---------------------------------------------------------------------------------------------
// Sections

/** A `tls:` section whose PEM files must exist and parse now: `config check`, `serve` and reload alike. */
function withTlsFiles<T extends z.ZodType<TlsFiles>>(schema: T) {
  return schema.superRefine((files, ctx) => {
    const problem = tlsFilesProblem(files);
    if (problem) ctx.addIssue({ code: 'custom', path: [problem.field], message: problem.message });
  });
}

// HTTPS on the public listener; with ca_file + client_auth, client certificates are asked for.
const listenTlsSchema = withTlsFiles(
  z
    .strictObject({
      cert_file: nonEmpty,
      key_file: nonEmpty,
      ca_file: nonEmpty.optional(), // the CA(s) client certificates must chain to
      client_auth: z.enum(['require', 'optional']).optional(),
    })
    .superRefine((tls, ctx) => {
      if (tls.client_auth !== undefined && tls.ca_file === undefined) {
        ctx.addIssue({ code: 'custom', path: ['ca_file'], message: 'required with client_auth (the CA client certificates must chain to)' });
      }
      if (tls.ca_file !== undefined && tls.client_auth === undefined) {
        ctx.addIssue({ code: 'custom', path: ['client_auth'], message: 'required with ca_file: require or optional' });
      }
    }),
);

// HTTPS on the admin port. No client certificates: probes and scrapers must keep getting in.
const adminTlsSchema = withTlsFiles(z.strictObject({ cert_file: nonEmpty, key_file: nonEmpty }));

/** The name an upstream's certificate must be for (SNI): a DNS name (SNI carries no IP addresses). */
const serverName = z
  .string()
  .regex(HOST_NAME, { error: 'expected a host name like api.internal' })
  .refine((name) => isIP(name) === 0, { error: "expected a host name, not an IP address (a target's IP is checked without servername)" });

// How https:// targets are checked and what the gateway shows them. Without it: the system's CAs.
const upstreamTlsSchema = withTlsFiles(
  z
    .strictObject({
      ca_file: nonEmpty.optional(), // trust these CAs instead of the system's
      servername: serverName.optional(), // the name to ask for and check; default: the target's host
      cert_file: nonEmpty.optional(), // a client certificate, for upstreams that require one (mTLS)
      key_file: nonEmpty.optional(),
      reject_unauthorized: boolean.default(true), // false: any certificate is accepted (warned at start)
    })
    .superRefine((tls, ctx) => {
      if ((tls.cert_file === undefined) !== (tls.key_file === undefined)) {
        const missing = tls.cert_file === undefined ? 'cert_file' : 'key_file';
        ctx.addIssue({ code: 'custom', path: [missing], message: 'cert_file and key_file go together (the client certificate and its key)' });
      }
    }),
);

const listenSchema = z.strictObject({
  host: host.default('0.0.0.0'),
  port: integer(0, 65535).default(8080), // 0 = any free port (tests)
  max_header_bytes: byteSize(1).default(16384),
  // Header lines a request may carry (duplicates count); past it, 431 headers_too_large, never a silent drop.
  max_header_count: integer(1, 10_000).default(100),
  // Header names with `_` (CGI, WSGI and Rack read X_Consumer_Id as X-Consumer-Id): dropped before
  // forwarding, like nginx. `allow` forwards them, except spellings of the headers the gateway sets or trusts.
  underscores_in_headers: z.enum(['drop', 'allow']).default('drop'),
  // Per-replica cap on requests in flight; past it, a fast 503 instead of queueing. 0 = no cap.
  max_in_flight: integer(0).default(0),
  // A client must send all its headers within this (slowloris guard); else 408 request_timeout.
  headers_timeout: duration().prefault('20s'),
  // The longest gap between two reads of a request body; past it, 408 request_timeout (the client's fault).
  body_timeout: duration().prefault('10s'),
  // A client that stops reading its answer for this long is cut, and the upstream connection freed.
  send_timeout: duration().prefault('8s'),
  // Request bodies declared up to this size are read whole before an upstream connection is taken,
  // so a slow writer cannot hold one (nginx's proxy_request_buffering); larger ones stream. 0 = never.
  request_buffer_bytes: byteSize().default(64 * 1024),
  tls: listenTlsSchema.optional(), // absent: plain HTTP
});

/** Failed attempts per client address before a block (the public port's keys, the admin port's token). */
function failedAttempts(defaultMaxAttempts: number) {
  return z
    .strictObject({
      max_attempts: integer(1).default(defaultMaxAttempts),
      per: duration().prefault('1m'),
      block_for: duration().prefault('5m'),
    })
    .prefault({});
}

// A shorter token could be guessed or brute-forced; 32 characters is what `openssl rand -hex 16` prints.
const ADMIN_TOKEN_MIN_LENGTH = 32;
const adminToken = z
  .string()
  // An empty token from an unset-but-defaulted env var must not disable auth.
  .min(1, { error: 'must not be empty', abort: true })
  // The message never quotes the token: it is a secret.
  .min(ADMIN_TOKEN_MIN_LENGTH, { error: `must be at least ${ADMIN_TOKEN_MIN_LENGTH} characters (generate one with: openssl rand -hex 32)` });

const adminSchema = z.strictObject({
  host: host.default('127.0.0.1'),
  port: integer(0, 65535).default(9090),
  token: adminToken.optional(),
  // Wrong bearer tokens per client address on /v1/keys before it is blocked (429), in memory per replica.
  failed_tokens: failedAttempts(10),
  // How long a rotated-out key keeps working, so clients can switch over (0s: it stops at once).
  rotation_grace: duration({ allowZero: true }).prefault('24h'),
  tls: adminTlsSchema.optional(), // absent: plain HTTP
});

const redisSchema = z
  .strictObject({
    url: z.string().refine(isRedisUrl, { error: 'expected a redis:// or rediss:// URL' }).optional(),
    sentinel: z.strictObject({ name: nonEmpty, sentinels: hostPortList }).optional(),
    cluster: z.strictObject({ nodes: hostPortList }).optional(),
    password: nonEmpty.optional(),
    db: integer(0).optional(),
    // Braces would change the Redis Cluster hash tag of every key.
    key_prefix: z.string().regex(/^[^{}]*$/, { error: 'must not contain { or }' }).default('sluice:'),
  })
  .superRefine(
    (redis, ctx) => {
      const modes = [redis.url, redis.sentinel, redis.cluster].filter((m) => m !== undefined).length;
      if (modes !== 1) ctx.addIssue({ code: 'custom', message: 'expected exactly one of url, sentinel or cluster' });
      if (redis.cluster !== undefined && redis.db !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['db'], message: 'not allowed with cluster (a cluster has only db 0)' });
      }
    },
    // Run even when a field failed, so every problem is reported at once.
    { when: (payload) => isRecord(payload.value) },
  );

const storeSchema = z
  .strictObject({
    redis: redisSchema.optional(), // absent = embedded in-memory store
    // Redis answering nothing for this long is an outage: the failure policy decides (redis/deadline.ts).
    timeout_ms: integer(1).default(100),
    // How long a request waits for a late answer while Redis is still answering (then 503, never a local decision).
    max_wait_ms: integer(1).default(2000),
    replicas_hint: integer(1).default(1),
    cache: z
      .strictObject({
        ttl: duration().prefault('5s'),
        max_entries: integer(1).default(10000),
      })
      .prefault({}),
  })
  .superRefine((store, ctx) => {
    if (store.max_wait_ms < store.timeout_ms) {
      ctx.addIssue({ code: 'custom', path: ['max_wait_ms'], message: `must be at least timeout_ms (${store.timeout_ms})` });
    }
  });

/** enforce refuses over the limit; shadow only counts and reports what it would have refused. */
const limitMode = z.enum(['enforce', 'shadow'], { error: 'expected enforce or shadow' });

const limitSchema = z.strictObject({ requests: integer(1), per: duration(), mode: limitMode.optional() });

/** A list of windows, at most one per window length (one counter per length). */
const limitList = z.array(limitSchema).superRefine((limits, ctx) => {
  limits.forEach((limit, i) => {
    if (limits.findIndex((other) => other.per === limit.per) !== i) {
      ctx.addIssue({ code: 'custom', path: [i, 'per'], message: 'another limit of this list has the same window' });
    }
  });
});

const tierSchema = z.strictObject({
  limits: limitList,
  // Windows shared by every key of one account (keys without an account are not counted in them).
  account_limits: limitList.optional(),
  // A plain counter per calendar period in UTC (week: ISO, starting Monday), per key.
  quota: z
    .strictObject({
      requests: integer(1),
      per: z.enum(['day', 'week', 'month'], { error: 'expected day, week or month' }),
      mode: limitMode.optional(),
    })
    .optional(),
  // Requests in flight per key (anonymous callers: per client address), across all replicas; the
  // object form may say mode: shadow for this limit alone.
  concurrency: z.union([integer(1), z.strictObject({ limit: integer(1), mode: limitMode.optional() })]).optional(),
  // shadow: no window of this tier refuses (all count); a single window may say mode: shadow on its own.
  mode: limitMode.optional(), // absent: enforce
  scopes: z.array(scope).default([]),
});

const upstreamSchema = z.strictObject({
  targets: z
    .array(
      z.string().transform((text, ctx) => {
        const origin = httpOrigin(text);
        if (origin === undefined) {
          ctx.addIssue({ code: 'custom', message: 'expected an http(s) origin like http://127.0.0.1:9001 (no path or query)' });
          return z.NEVER;
        }
        return origin;
      }),
    )
    .min(1, { error: 'expected at least one target' }),
  timeout_ms: integer(1).default(30000),
  connections: integer(1).default(128),
  // How many of them one API key may hold at once (slow readers of one key cannot take them all).
  // Default: half of connections.
  max_connections_per_key: integer(1).optional(),
  // Passive health: a target failing `failures` times in a row is ejected for `cooldown`, then tried once.
  breaker: z
    .strictObject({
      failures: integer(1).default(5),
      cooldown: duration().prefault('10s'),
      on_5xx: boolean.default(false), // count 5xx answers as failures too
    })
    .prefault({}),
  tls: upstreamTlsSchema.optional(),
}).superRefine((upstream, ctx) => {
  const plain = upstream.targets.findIndex((origin) => origin.startsWith('http:'));
  if (upstream.tls !== undefined && plain !== -1) {
    ctx.addIssue({ code: 'custom', path: ['tls'], message: `applies to https:// targets only, and targets[${plain}] is http://` });
  }
  if (upstream.max_connections_per_key !== undefined && upstream.max_connections_per_key > upstream.connections) {
    ctx.addIssue({ code: 'custom', path: ['max_connections_per_key'], message: `must be at most connections (${upstream.connections})` });
  }
});

const corsSchema = z.strictObject({
  allow_origins: z.array(z.string().regex(/^(\*|https?:\/\/[^/\s]+)$/, { error: 'expected an origin like https://app.example.com, or "*"' })).min(1),
  allow_methods: methods.optional(), // default: the route's methods, or the common ones
  allow_headers: z.array(z.string().regex(/^[A-Za-z0-9-]+$/, { error: 'expected a header name' })).default(['content-type', 'x-api-key']),
  expose_headers: z.array(z.string().regex(/^[A-Za-z0-9-]+$/, { error: 'expected a header name' })).default([]),
  allow_credentials: boolean.default(false),
  max_age: duration().prefault('10m'),
});

const routeSchema = z.strictObject({
  name,
  match: z.strictObject({
    path_prefix: pathPrefix,
    methods: methods.optional(), // absent = any method
  }),
  upstream: z.string(),
  // required: every request needs a valid key (the default). optional: requests without a key are
  // anonymous (anonymous_tier, counted per client address); a key sent is checked as usual.
  // none: every request is anonymous; a key sent is ignored (never looked up, never forwarded).
  auth: z.enum(['required', 'optional', 'none'], { error: 'expected required, optional or none' }).default('required'),
  scopes: z.array(scope).default([]),
  cost: integer(1).default(1),
  timeout_ms: integer(1).optional(), // overrides the upstream's
  max_body_bytes: byteSize().default(10 * 1024 * 1024),
  strip_prefix: boolean.default(false),
  // Extra windows per tier for this route, counted per key and route on top of the tier's own.
  limits: z.record(name, limitList).default({}),
  // Extra attempts on another target after a connect failure (bodiless idempotent requests only).
  retries: integer(0, 10).default(1),
  cors: corsSchema.optional(),
});

const seedKeySchema = z.strictObject({
  name: nonEmpty,
  tier: z.string(),
  // Required: a seed exists so a known key works on every start (and on every replica).
  // A generated one could never be shown without writing a secret to the log.
  key: z
    .string({ error: 'required: the plaintext key to seed (sluice keys create generates keys in Redis)' })
    .regex(IMPORTED_KEY_PATTERN, { error: `expected ${IMPORTED_KEY_REQUIREMENT}` }),
  scopes: z.array(scope).optional(),
});

/**
 * Marks a section a running replica cannot swap (its listeners, store connections, drain timings,
 * what it registered at start): a reload says it takes effect on restart (restartOnlyChanges).
 * `view`: the part of the section that needs a restart, when some of it can be reloaded.
 */
function restartOnly<T extends z.ZodType>(schema: T, view?: (section: z.output<T>) => unknown): T {
  return schema.meta({ restart: true, restartView: view });
}

/**
 * A listener's certificate, key and CA files are re-read on reload; turning TLS on or off, or
 * changing client_auth, changes the listener itself: restart.
 */
function tlsReloadable(section: { tls?: TlsFiles & { client_auth?: string } }): unknown {
  return { ...section, tls: section.tls && { client_auth: section.tls.client_auth ?? null } };
}

/** The restart-only sections (as marked in the schema) whose values differ between two configs, as paths. */
export function restartOnlyChanges(current: Config, next: Config): string[] {
  const changed: string[] = [];
  const walk = (schema: z.ZodType, a: unknown, b: unknown, path: string[]) => {
    const meta = schema.meta();
    if (meta?.restart) {
      const view = (meta.restartView as ((section: unknown) => unknown) | undefined) ?? ((section: unknown) => section);
      if (!isDeepStrictEqual(view(a), view(b))) changed.push(path.join('.'));
      return;
    }
    const object = objectInside(schema);
    if (!object) return;
    for (const [key, child] of Object.entries(object.shape)) {
      walk(child as z.ZodType, (a as Record<string, unknown> | undefined)?.[key], (b as Record<string, unknown> | undefined)?.[key], [...path, key]);
    }
  };
  walk(configSchema, current, next, []);
  return changed;
}

type SchemaDef = { type: string; innerType?: z.ZodType; in?: z.ZodType; out?: z.ZodType; element?: z.ZodType; valueType?: z.ZodType; shape?: Record<string, z.ZodType> };

/** The schema under defaults, optionals and pipes (preprocess/transform). */
function unwrap(schema: z.ZodType): z.ZodType & { _zod: { def: SchemaDef } } {
  let inner = schema as z.ZodType & { _zod: { def: SchemaDef } };
  for (;;) {
    const def = inner._zod.def;
    const next = def.innerType ?? (def.type === 'pipe' ? (def.out?._zod.def.type === 'transform' ? def.in : def.out) : undefined);
    if (!next) return inner;
    inner = next as typeof inner;
  }
}

/** The object schema under defaults and optionals, if there is one. */
function objectInside(schema: z.ZodType): z.ZodObject | undefined {
  const inner = unwrap(schema);
  return inner._zod.def.type === 'object' ? (inner as unknown as z.ZodObject) : undefined;
}

/** The keys the config's mapping at `path` may have (`['routes', 0, 'match']` → path_prefix, methods); [] if not a fixed mapping. */
export function knownKeysAt(path: readonly (string | number)[]): string[] {
  let schema: z.ZodType | undefined = configSchema;
  for (const segment of path) {
    const def: SchemaDef = unwrap(schema)._zod.def;
    schema =
      def.type === 'object' ? objectInside(schema)?.shape[segment] : def.type === 'array' ? def.element : def.type === 'record' ? def.valueType : undefined;
    if (schema === undefined) return [];
  }
  const object = objectInside(schema);
  return object ? Object.keys(object.shape) : [];
}

function nonEmptyRecord<T extends z.ZodType>(value: T, what: string) {
  return z.record(name, value).refine((r) => Object.keys(r).length > 0, { error: `at least one ${what} is required` });
}

export const configSchema = z
  .strictObject({
    listen: restartOnly(listenSchema.prefault({}), tlsReloadable),
    admin: restartOnly(adminSchema.prefault({}), tlsReloadable),
    store: restartOnly(storeSchema.prefault({})),
    failure_policy: restartOnly(z.enum(['fail_open_local', 'fail_closed']).default('fail_open_local')),
    // Methods outside the standard ones (config/methods.ts) that routes may name, e.g. [PURGE].
    allow_custom_methods: z
      .array(
        method.superRefine((m, ctx) => {
          const problem = unreceivableMethod(m);
          if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
        }),
      )
      .default([]),
    trusted_proxies: z
      .array(z.string().refine(isIpOrCidr, { error: 'expected an IP address or CIDR like 10.0.0.0/8' }))
      .default([]),
    lifecycle: restartOnly(
      z
        .strictObject({
          drain_delay: duration({ allowZero: true }).prefault('5s'),
          grace: duration({ allowZero: true }).prefault('30s'),
        })
        .prefault({}),
    ),
    rate_limiting: z
      .strictObject({
        // Also send the IETF draft's RateLimit-Policy / RateLimit headers.
        ietf_headers: boolean.default(false),
        // Failed key attempts per client address before it gets 429 too_many_failed_attempts.
        failed_keys: restartOnly(failedAttempts(20)),
        // How long a concurrency slot outlives the replica holding it: live replicas renew their
        // leases every third of it, so only a dead replica's slots expire, this long after it died.
        concurrency_lease: duration().prefault('30s').refine((ms) => ms >= 300, { error: 'must be at least 300ms' }),
      })
      .prefault({}),
    metrics: z
      .strictObject({
        // Labels added to every metric of this replica, e.g. { instance: "${HOSTNAME}" }.
        default_labels: restartOnly(
          z.record(z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, { error: 'expected a Prometheus label name' }), z.string()).default({}),
        ),
      })
      .prefault({}),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        // Fraction of successful requests written to the access log (failures are always logged).
        access_sample: z.number({ error: 'expected a number from 0 to 1' }).min(0).max(1).default(1),
      })
      .prefault({}),
    tiers: nonEmptyRecord(tierSchema, 'tier'),
    // The tier of requests without a key on auth: none / optional routes, counted per client address.
    anonymous_tier: name.optional(),
    upstreams: nonEmptyRecord(upstreamSchema, 'upstream'),
    routes: z.array(routeSchema).min(1, { error: 'at least one route is required' }),
    keys: z.array(seedKeySchema).default([]),
  })
  .superRefine((config, ctx) => checkReferences(config, ctx), { when: (payload) => isRecord(payload.value) });

export type Config = z.output<typeof configSchema>;
export type Tier = Config['tiers'][string];
export type Limit = Tier['limits'][number];
export type Quota = NonNullable<Tier['quota']>;
export type Upstream = Config['upstreams'][string];
export type UpstreamTls = NonNullable<Upstream['tls']>;
export type ListenTls = NonNullable<Config['listen']['tls']>;
export type Route = Config['routes'][number];
export type RedisConfig = NonNullable<Config['store']['redis']>;
export type SeedKey = Config['keys'][number];

// ---------------------------------------------------------------------------------------------
// Cross-field rules. They also run when other parts failed (to report everything at once), so
// they read the partly validated value defensively instead of trusting its type.

type Issue = { path: (string | number)[]; message: string };

function checkReferences(value: unknown, ctx: z.RefinementCtx): void {
  const root = asRecord(value) ?? {};
  const issues = [...checkRoutes(root), ...checkMethods(root), ...checkAnonymousAccess(root), ...checkSeedKeys(root)];
  for (const { path, message } of issues) ctx.addIssue({ code: 'custom', path, message });
}

function checkRoutes(root: Record<string, unknown>): Issue[] {
  const issues: Issue[] = [];
  const upstreams = asRecord(root.upstreams);
  const routeNames = new Set<string>();
  const matchOwners = new Map<string, string>(); // "METHOD /prefix" → describes the route that has it
  asArray(root.routes).forEach((item, i) => {
    const route = asRecord(item);
    if (!route) return;
    const label = typeof route.name === 'string' ? `route ${quote(route.name)}` : `routes[${i}]`;
    if (typeof route.name === 'string') {
      if (routeNames.has(route.name)) issues.push({ path: ['routes', i, 'name'], message: `duplicate route name ${quote(route.name)}` });
      routeNames.add(route.name);
    }
    if (upstreams && typeof route.upstream === 'string' && !Object.hasOwn(upstreams, route.upstream)) {
      issues.push({ path: ['routes', i, 'upstream'], message: `unknown upstream ${quote(route.upstream)}` });
    }
    const tiers = asRecord(root.tiers);
    for (const tierName of Object.keys(asRecord(route.limits) ?? {})) {
      if (tiers && !Object.hasOwn(tiers, tierName)) {
        issues.push({ path: ['routes', i, 'limits', tierName], message: `unknown tier ${quote(tierName)}` });
      }
    }
    const match = asRecord(route.match);
    if (match && typeof match.path_prefix === 'string') {
      const routeMethods = Array.isArray(match.methods) ? match.methods.map((m) => String(m).toUpperCase()) : ['*'];
      const pairs = routeMethods.map((method) => `${method} ${match.path_prefix}`);
      const owner = pairs.map((pair) => matchOwners.get(pair)).find((o) => o !== undefined);
      if (owner !== undefined) {
        issues.push({ path: ['routes', i, 'match'], message: `same path_prefix and method as ${owner}` });
      }
      for (const pair of pairs) if (!matchOwners.has(pair)) matchOwners.set(pair, label);
    }
  });
  return issues;
}

/** Every method a route or its CORS policy names: standard, or spelled out in allow_custom_methods. */
function checkMethods(root: Record<string, unknown>): Issue[] {
  const allowCustom = asArray(root.allow_custom_methods).filter((m): m is string => typeof m === 'string');
  const issues: Issue[] = [];
  asArray(root.routes).forEach((item, i) => {
    const route = asRecord(item);
    const lists: [string[], unknown][] = [
      [['match', 'methods'], asRecord(route?.match)?.methods],
      [['cors', 'allow_methods'], asRecord(route?.cors)?.allow_methods],
    ];
    for (const [at, list] of lists) {
      asArray(list).forEach((m, j) => {
        const problem = typeof m === 'string' && METHOD_TOKEN.test(m) ? methodProblem(m, allowCustom) : undefined;
        if (problem !== undefined) issues.push({ path: ['routes', i, ...at, j], message: problem });
      });
    }
  });
  return issues;
}

/** Routes open to callers without a key need a tier to count them in; scopes mean nothing without a key. */
function checkAnonymousAccess(root: Record<string, unknown>): Issue[] {
  const issues: Issue[] = [];
  const tiers = asRecord(root.tiers);
  const anonymousTier = root.anonymous_tier;
  if (tiers && typeof anonymousTier === 'string' && !Object.hasOwn(tiers, anonymousTier)) {
    issues.push({ path: ['anonymous_tier'], message: `unknown tier ${quote(anonymousTier)}` });
  }
  asArray(root.routes).forEach((item, i) => {
    const route = asRecord(item);
    if (!route || (route.auth !== 'none' && route.auth !== 'optional')) return;
    if (anonymousTier === undefined) {
      issues.push({ path: ['routes', i, 'auth'], message: `auth: ${route.auth} needs a top-level anonymous_tier (the tier of requests without a key)` });
    }
    if (route.auth === 'none' && asArray(route.scopes).length > 0) {
      issues.push({ path: ['routes', i, 'scopes'], message: 'not allowed with auth: none (no key, so no scopes to check)' });
    }
  });
  return issues;
}

function checkSeedKeys(root: Record<string, unknown>): Issue[] {
  const issues: Issue[] = [];
  const tiers = asRecord(root.tiers);
  const plaintexts = new Map<string, number>();
  asArray(root.keys).forEach((item, i) => {
    const key = asRecord(item);
    if (!key) return;
    if (typeof key.key === 'string') {
      const first = plaintexts.get(key.key);
      // Never quote the key itself: it is a secret.
      if (first !== undefined) issues.push({ path: ['keys', i, 'key'], message: `same key as keys[${first}]` });
      else plaintexts.set(key.key, i);
    }
    if (!tiers || typeof key.tier !== 'string') return;
    if (!Object.hasOwn(tiers, key.tier)) {
      issues.push({ path: ['keys', i, 'tier'], message: `unknown tier ${quote(key.tier)}` });
      return;
    }
    const tierScopes = asArray(asRecord(tiers[key.tier])?.scopes);
    if (tierScopes.includes('*')) return;
    asArray(key.scopes).forEach((s, j) => {
      if (typeof s === 'string' && !tierScopes.includes(s)) {
        issues.push({ path: ['keys', i, 'scopes', j], message: `scope ${quote(s)} is not allowed by tier ${quote(key.tier as string)}` });
      }
    });
  });
  return issues;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return isRecord(value) ? value : undefined;
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** Values are quoted as JSON strings; the loader relies on that to redact values taken from the environment. */
function quote(value: string): string {
  return JSON.stringify(value);
}
