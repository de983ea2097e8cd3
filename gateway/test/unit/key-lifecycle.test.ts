import { KeyCache } from '../../src/keys/cache';
import { hashSecret, newRecord, opensWith, rotatedRecord, toPublicKey } from '../../src/keys/records';
import { MemoryKeyStore } from '../../src/keys/memory-store';
import { KeyExistsError, type ApiKeyRecord } from '../../src/keys/types';

// Rotation arithmetic, the public view of a record, the embedded store's paging and conflicts, and
// the key cache's per-key invalidation (with the real embedded store behind it).

const T0 = Date.parse('2030-01-01T00:00:00Z');

describe('rotation', () => {
  it('the old secret opens the key until the grace period ends; the new one from the start', () => {
    const { record, key } = newRecord({ name: 'n', tier: 't' }, new Date(T0));
    const rotated = rotatedRecord(record, hashSecret('new-secret'), 60_000, T0);
    expect(opensWith(rotated, hashSecret('new-secret'), T0)).toBe(true);
    expect(opensWith(rotated, hashSecret(key), T0 + 59_999)).toBe(true);
    expect(opensWith(rotated, hashSecret(key), T0 + 60_000)).toBe(false);
    expect(opensWith(rotated, hashSecret('something else'), T0)).toBe(false);
  });

  it('with no grace the old secret stops at once; expired retired secrets are dropped on the next rotation', () => {
    const { record, key } = newRecord({ name: 'n', tier: 't' });
    expect(opensWith(rotatedRecord(record, hashSecret('b'), 0, T0), hashSecret(key), T0)).toBe(false);
    const twice = rotatedRecord(rotatedRecord(record, hashSecret('b'), 1000, T0), hashSecret('c'), 1000, T0 + 5000);
    expect(twice.previous_secrets).toEqual([{ hash: hashSecret('b'), until: new Date(T0 + 6000).toISOString() }]);
  });

  it('the public view never carries a hash, even of fields it does not know', () => {
    const { record } = newRecord({ name: 'n', tier: 't', scopes: ['a'] });
    const rotated = { ...rotatedRecord(record, hashSecret('x'), 1000), internal: 'x' } as ApiKeyRecord;
    const shown = JSON.stringify(toPublicKey(rotated));
    expect(shown).not.toMatch(/[0-9a-f]{64}|secret|internal/);
    expect(Object.keys(toPublicKey(rotated))).toEqual(['id', 'name', 'tier', 'scopes', 'status', 'created_at', 'updated_at', 'rotated_at']);
  });
});

describe('the embedded store', () => {
  it('pages in id order with the last id as cursor, and refuses a secret that opens another key', async () => {
    const store = new MemoryKeyStore();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await store.create({ name: `k${i}`, tier: 't' })).record.id);
    const first = await store.list({ limit: 2 });
    const rest = await store.list({ after: first.next, limit: 10 });
    expect([...first.records, ...rest.records].map((r) => r.id)).toEqual(ids.sort());
    expect(rest.next).toBeUndefined();

    const { record } = await store.create({ name: 'a', tier: 't', key: 'sk_test_memory_conflict_01' });
    await expect(store.create({ name: 'b', tier: 't', key: 'sk_test_memory_conflict_01' })).rejects.toBeInstanceOf(KeyExistsError);
    await expect(store.put({ ...record, name: 'restored' })).resolves.toBeUndefined(); // the same id may come back
    expect((await store.get(record.id))!.name).toBe('restored');
  });
});

describe('KeyCache', () => {
  const options = { ttlMs: 60_000, maxEntries: 100 };

  it('drops every cached secret of a key on invalidate(id), and only that key', async () => {
    const store = new MemoryKeyStore();
    const one = await store.create({ name: 'one', tier: 't' });
    const other = await store.create({ name: 'other', tier: 't' });
    const rotatedKey = 'sk_test_rotated_secret_000001';
    await store.addSecret(hashSecret(rotatedKey), one.record.id);
    await store.update(one.record.id, (r) => rotatedRecord(r, hashSecret(rotatedKey), 60_000));
    const cache = new KeyCache(store, options);
    expect((await cache.find(one.key)).cached).toBe(false); // the old secret, in its grace period
    expect((await cache.find(rotatedKey)).cached).toBe(false);
    expect((await cache.find(other.key)).cached).toBe(false);
    expect((await cache.find(one.key)).cached).toBe(true);

    await store.update(one.record.id, (r) => ({ ...r, status: 'revoked' }));
    expect((await cache.find(rotatedKey)).record!.status).toBe('active'); // cached: it cannot know yet
    cache.invalidate(one.record.id);
    expect(await cache.find(one.key)).toMatchObject({ cached: false, record: { status: 'revoked' } });
    expect(await cache.find(rotatedKey)).toMatchObject({ cached: false, record: { status: 'revoked' } });
    expect((await cache.find(other.key)).cached).toBe(true);
  });

  it('does not cache what a lookup read before an invalidation that overtook it', async () => {
    const store = new MemoryKeyStore();
    const { record, key } = await store.create({ name: 'n', tier: 't' });
    const cache = new KeyCache(store, options);
    const inFlight = cache.find(key); // reads the record now...
    await store.update(record.id, (r) => ({ ...r, tier: 'new' }));
    cache.invalidate(record.id); // ...and the change is announced before that read is cached
    expect((await inFlight).record!.tier).toBe('t');
    expect(await cache.find(key)).toMatchObject({ cached: false, record: { tier: 'new' } });
  });

  it('after expireAll() every entry is checked with the store again', async () => {
    const store = new MemoryKeyStore();
    const { record, key } = await store.create({ name: 'n', tier: 't' });
    const cache = new KeyCache(store, options);
    await cache.find(key);
    await store.update(record.id, (r) => ({ ...r, status: 'revoked' })); // a change whose announcement was missed
    expect((await cache.find(key)).record!.status).toBe('active');
    cache.expireAll();
    expect(await cache.find(key)).toMatchObject({ cached: false, record: { status: 'revoked' } });
    expect((await cache.find(key)).cached).toBe(true);
  });
});
