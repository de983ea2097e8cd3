import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { Agent } from 'undici';
import { parse } from 'yaml';
import { ADMIN_TOKEN, adminApi, createKey, type AdminCall } from '../support/admin';
import { suiteStack, baseConfig, REPO_ROOT, type TestGateway } from '../support/gateway';
import { send, type SimpleResponse } from '../support/http';
import { catalogue } from '../../src/errors/catalogue';
import { redisCli, type TestRedis } from '../support/redis';

// gateway/openapi.yaml against the live admin API: every operation is called, every answer's status
// must be documented for its operation and its body must match the documented schema (ajv, JSON
// Schema 2020-12 as OpenAPI 3.1 uses), and every documented status is produced at least once.

type Operation = { responses: Record<string, { $ref?: string; content?: Record<string, { schema: { $ref?: string } }> }> };
const spec = parse(readFileSync(path.join(REPO_ROOT, 'gateway/openapi.yaml'), 'utf8'));

const ajv = new Ajv2020({ strict: true, allErrors: true });
ajv.addFormat('date-time', { validate: (text: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(text) && !Number.isNaN(Date.parse(text)) });
// The spec's component schemas, with their refs pointed at $defs of one schema document.
const defs = JSON.parse(JSON.stringify(spec.components.schemas).replaceAll('#/components/schemas/', 'sluice#/$defs/'));
ajv.addSchema({ $id: 'sluice', $defs: defs });

/** The schema of a documented answer, following a response $ref; undefined for a non-JSON answer. */
function responseSchema(operation: Operation, status: string): { $ref: string } | undefined {
  let response = operation.responses[status];
  if (response.$ref) response = spec.components.responses[response.$ref.split('/').pop()!];
  const ref = response.content?.['application/json']?.schema.$ref;
  return ref ? { $ref: ref.replace('#/components/schemas/', 'sluice#/$defs/') } : undefined;
}

const seen = new Map<string, Set<string>>(); // "get /v1/keys/{id}" → statuses seen

/** Checks a live answer against the spec and records it for the coverage checks. */
function check(method: string, template: string, res: SimpleResponse): SimpleResponse {
  const operation: Operation | undefined = spec.paths[template]?.[method];
  expect([method, template, operation === undefined ? 'undocumented operation' : 'ok']).toEqual([method, template, 'ok']);
  const status = String(res.status);
  expect([method, template, status, status in operation!.responses]).toEqual([method, template, status, true]);
  const schema = responseSchema(operation!, status);
  if (schema) {
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    const validate = ajv.compile(schema);
    if (!validate(res.json)) throw new Error(`${method} ${template} ${status}: ${ajv.errorsText(validate.errors)}\n${res.text}`);
  }
  const key = `${method} ${template}`;
  if (!seen.has(key)) seen.set(key, new Set());
  seen.get(key)!.add(status);
  return res;
}

let redis: TestRedis;
let gateway: TestGateway;
let admin: AdminCall;

const stack = suiteStack(({ redis, upstream }) =>
  baseConfig({
    admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN, failed_tokens: { max_attempts: 10, per: '1m', block_for: '1m' } }, // 127.0.0.1 sends 7 wrong tokens below
    store: { redis: { url: redis.url }, timeout_ms: 1000 },
    tiers: {
      free: {
        limits: [{ requests: 10, per: '1m' }],
        account_limits: [{ requests: 50, per: '1m', mode: 'shadow' }],
        quota: { requests: 1000, per: 'month' },
        scopes: ['users:read'],
      },
    },
    upstreams: { app: { targets: [upstream.url] } },
    routes: [{ name: 'users', match: { path_prefix: '/v1/users' }, upstream: 'app' }],
  }));

beforeAll(() => {
  ({ redis, gateway } = stack);
  admin = adminApi(gateway.adminUrl);
});

const KEY = '/v1/keys/{id}';
const MISSING = '/v1/keys/key_00000000000000000000';
const big = { name: 'x'.repeat(17 * 1024), tier: 'free' };
const noToken = { authorization: '' };

it('every answer of the admin listener matches gateway/openapi.yaml', async () => {
  const created = await createKey(admin, { name: 'spec', tier: 'free', scopes: ['users:read'], expires_at: '2099-01-01T00:00:00Z' });
  const id = `/v1/keys/${created.id}`;
  await send(`${gateway.url}/v1/users/ok`, { headers: { 'x-api-key': created.key } });
  const accounted = await createKey(admin, { name: 'acct', tier: 'free', account: 'acme', limits: [{ requests: 5, per: '1m' }] });
  await send(`${gateway.url}/v1/users/ok`, { headers: { 'x-api-key': accounted.key } });
  const accountedId = `/v1/keys/${accounted.id}`;

  const calls: [string, string, () => Promise<SimpleResponse>][] = [
    ['post', '/v1/keys', () => admin('POST', '/v1/keys', { name: 'a', tier: 'free', key: 'sk_test_openapi_import_00001' })],
    ['post', '/v1/keys', () => admin('POST', '/v1/keys', { name: 'a' })],
    ['post', '/v1/keys', () => admin('POST', '/v1/keys', { name: 'a', tier: 'free' }, noToken)],
    ['post', '/v1/keys', () => admin('POST', '/v1/keys', { name: 'a', tier: 'free', key: 'sk_test_openapi_import_00001' })],
    ['post', '/v1/keys', () => admin('POST', '/v1/keys', big)],
    ['post', '/v1/keys', () => admin('POST', '/v1/keys', { name: 'a', tier: 'gold' })],
    ['get', '/v1/keys', () => admin('GET', '/v1/keys?limit=1')],
    ['get', '/v1/keys', () => admin('GET', '/v1/keys')],
    ['get', '/v1/keys', () => admin('GET', '/v1/keys?limit=9999')],
    ['get', '/v1/keys', () => admin('GET', '/v1/keys', undefined, noToken)],
    ['get', KEY, () => admin('GET', id)],
    ['get', KEY, () => admin('GET', id, undefined, noToken)],
    ['get', KEY, () => admin('GET', MISSING)],
    ['patch', KEY, () => admin('PATCH', id, { name: 'b', scopes: null })],
    ['patch', KEY, () => admin('PATCH', id, { name: 7 })],
    ['patch', KEY, () => admin('PATCH', id, { name: 'b' }, noToken)],
    ['patch', KEY, () => admin('PATCH', MISSING, { name: 'b' })],
    ['patch', KEY, () => admin('PATCH', id, big)],
    ['patch', KEY, () => admin('PATCH', id, { expires_at: '2000-01-01T00:00:00Z' })],
    ['post', '/v1/keys', () => admin('POST', '/v1/keys', { name: 'acct2', tier: 'free', account: 'acme', limits: [{ requests: 3, per: '1h' }, { requests: 30, per: '1d' }] })],
    ['post', '/v1/keys', () => admin('POST', '/v1/keys', { name: 'acct3', tier: 'free', account: 'a b' })],
    ['get', KEY, () => admin('GET', accountedId)],
    ['patch', KEY, () => admin('PATCH', accountedId, { limits: [{ requests: 3, per: '1h' }] })],
    ['patch', KEY, () => admin('PATCH', accountedId, { limits: null })],
    ['patch', KEY, () => admin('PATCH', accountedId, { account: 'other' })],
    ['get', `${KEY}/usage`, () => admin('GET', `${accountedId}/usage`)],
    ['get', `${KEY}/usage`, () => admin('GET', `${id}/usage`)],
    ['get', `${KEY}/usage`, () => admin('GET', `${id}/usage`, undefined, noToken)],
    ['get', `${KEY}/usage`, () => admin('GET', `${MISSING}/usage`)],
    ['post', `${KEY}/rotate`, () => admin('POST', `${id}/rotate`)],
    ['post', `${KEY}/rotate`, () => admin('POST', `${id}/rotate`, { now: true })],
    ['post', `${KEY}/rotate`, () => admin('POST', `${id}/rotate`, undefined, noToken)],
    ['post', `${KEY}/rotate`, () => admin('POST', `${MISSING}/rotate`)],
    ['post', `${KEY}/rotate`, () => admin('POST', `${id}/rotate`, { padding: 'x'.repeat(17 * 1024) })],
    ['delete', KEY, () => admin('DELETE', id)],
    ['delete', KEY, () => admin('DELETE', id, undefined, noToken)],
    ['delete', KEY, () => admin('DELETE', MISSING)],
    ['post', `${KEY}/rotate`, () => admin('POST', `${id}/rotate`)], // revoked: 422
    ['get', '/healthz', () => send(`${gateway.adminUrl}/healthz`)],
    ['get', '/readyz', () => send(`${gateway.adminUrl}/readyz`)],
    ['get', '/metrics', () => send(`${gateway.adminUrl}/metrics`)],
  ];
  for (const [method, template, run] of calls) check(method, template, await run());

  // Another client address (127.0.0.70) that sends max_attempts wrong tokens is refused (429) on every
  // key operation, with the right token too.
  const attacker = new Agent({ localAddress: '127.0.0.70' });
  try {
    const fromAttacker = (method: string, path: string, token = ADMIN_TOKEN) =>
      send(`${gateway.adminUrl}${path}`, { method, headers: { authorization: `Bearer ${token}` }, dispatcher: attacker });
    for (let i = 0; i < 10; i++) check('get', '/v1/keys', await fromAttacker('GET', '/v1/keys', 'wrong-token'));
    for (const [method, template, path] of [
      ['post', '/v1/keys', '/v1/keys'],
      ['get', '/v1/keys', '/v1/keys'],
      ['get', KEY, id],
      ['patch', KEY, id],
      ['delete', KEY, id],
      ['post', `${KEY}/rotate`, `${id}/rotate`],
      ['get', `${KEY}/usage`, `${id}/usage`],
    ]) {
      const res = check(method, template, await fromAttacker(method.toUpperCase(), path));
      expect(res.status).toBe(429);
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    }
  } finally {
    await attacker.close();
  }

  // A usage report for a key whose tier left the config (422); every key operation with Redis frozen (503).
  const orphan = await createKey(admin, { name: 'orphan', tier: 'free' });
  await redisCli(redis.port, 'HSET', `sluice:key:{${orphan.id}}`, 'tier', 'retired');
  check('get', `${KEY}/usage`, await admin('GET', `/v1/keys/${orphan.id}/usage`));
  redis.pause();
  try {
    await Promise.all([
      admin('POST', '/v1/keys', { name: 'a', tier: 'free' }).then((res) => check('post', '/v1/keys', res)),
      admin('GET', '/v1/keys').then((res) => check('get', '/v1/keys', res)),
      admin('GET', id).then((res) => check('get', KEY, res)),
      admin('PATCH', id, { name: 'c' }).then((res) => check('patch', KEY, res)),
      admin('DELETE', id).then((res) => check('delete', KEY, res)),
      admin('POST', `${id}/rotate`).then((res) => check('post', `${KEY}/rotate`, res)),
      admin('GET', `${id}/usage`).then((res) => check('get', `${KEY}/usage`, res)),
    ]);
  } finally {
    redis.resume();
  }
  // Redis emptied: the marker is gone, so the replica is not ready (503 with a reason).
  await redisCli(redis.port, 'FLUSHALL');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  check('get', '/readyz', await send(`${gateway.adminUrl}/readyz`));
  // ... and every key change is refused (503, marker_missing) until it is restored or declared new.
  check('post', '/v1/keys', await admin('POST', '/v1/keys', { name: 'a', tier: 'free' }));
  check('patch', KEY, await admin('PATCH', id, { name: 'd' }));
  check('delete', KEY, await admin('DELETE', id));
  check('post', `${KEY}/rotate`, await admin('POST', `${id}/rotate`));

  for (const [template, item] of Object.entries<Record<string, Operation>>(spec.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (method === 'parameters') continue;
      expect([method, template, [...(seen.get(`${method} ${template}`) ?? [])].sort()]).toEqual([method, template, Object.keys(operation.responses).sort()]);
    }
  }
});

it('every error code the spec names is in the error catalogue, with the status it is documented under', () => {
  const documented: [string, string][] = [];
  for (const item of Object.values<Record<string, Operation>>(spec.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (method === 'parameters') continue;
      for (const status of Object.keys(operation.responses)) {
        const schema = responseSchema(operation, status);
        if (!schema) continue;
        const named = spec.components.schemas[schema.$ref.split('/').pop()!];
        const code = named.allOf?.[1]?.properties?.error?.properties?.code;
        for (const value of code?.const ? [code.const] : (code?.enum ?? [])) documented.push([value, status]);
      }
    }
  }
  expect(documented.length).toBeGreaterThan(10);
  for (const [code, status] of documented) expect([code, String(catalogue[code as keyof typeof catalogue]?.status)]).toEqual([code, status]);
});
