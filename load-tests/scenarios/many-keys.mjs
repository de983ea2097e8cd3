// Many keys: 100k distinct keys, each request the next one, against the same sluice driven with one
// (cached) key through the same load script. Most of the 100k-key requests miss the key cache
// (10k entries, 5 s TTL by default), so they pay the key lookup (GET + HGETALL) on top of the
// EVALSHA. Then Redis memory: per rate-limit hash (one per key and window) and per key record.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { withGroup } from '../lib/procs.mjs';
import { fmtCommands, memoryUsage, seedKeys, startRedis, usedMemory } from '../lib/redis.mjs';
import { BENCH_KEY, OPEN_TIER, startSluice, startUpstream, tempDir } from '../lib/servers.mjs';
import { bytes, fixed, int, ms, ratio, table, target, plural } from '../lib/report.mjs';
import { runRounds } from '../lib/rounds.mjs';

export const title = 'Many keys: 100k distinct keys vs one cached key';

const SAMPLE = 300;
const WINDOWS = OPEN_TIER.limits.map((l) => ({ label: l.per, ms: { '1m': 60_000, '1d': 86_400_000 }[l.per] }));

/** Up to `want` existing keys matching `pattern`, by SCAN (bounded number of calls). */
async function scanKeys(redis, pattern, want) {
  const found = [];
  let cursor = '0';
  for (let calls = 0; calls < 2000 && found.length < want; calls++) {
    const [next, keys] = await redis.client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    found.push(...keys);
    cursor = next;
    if (cursor === '0') break;
  }
  return found.slice(0, want);
}

const average = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

export async function run(settings) {
  return withGroup(async (group) => {
    const upstream = await startUpstream(group);
    const redis = await startRedis(group);
    const sluice = await startSluice(group, { upstream, redis });

    const memoryBefore = await usedMemory(redis);
    const seedStart = Date.now();
    const seeded = await seedKeys(redis, { count: settings.manyKeys, tier: 'bench' });
    const seedSeconds = (Date.now() - seedStart) / 1000;
    const memoryPerKey = ((await usedMemory(redis)) - memoryBefore) / settings.manyKeys;
    process.stderr.write(`[many-keys] seeded ${int(settings.manyKeys)} keys in ${seedSeconds.toFixed(1)} s\n`);
    const oneKey = path.join(tempDir('keys'), 'one-key.txt');
    writeFileSync(oneKey, `${BENCH_KEY}\n`);

    const cases = [
      { name: 'sluice, 1 cached key', pid: sluice.pid, load: { url: sluice.url, keysFile: oneKey }, redis, windows: 2 },
      { name: `sluice, ${int(settings.manyKeys)} keys in turn`, pid: sluice.pid, load: { url: sluice.url, keysFile: seeded.file }, redis, windows: 2 },
    ];
    const [one, many] = await runRounds({ ...settings, label: 'many-keys' }, cases, { rounds: settings.sideRounds });
    // Each key cache miss reads the key from Redis: one GET (secret → id) and one HGETALL (the record).
    const missesPerRequest = many.redis.direct.get ?? 0;

    // Memory of the rate-limit hashes the run left (one per key and window), and of key records.
    const windowRows = [];
    let worstFull = 0;
    for (const w of WINDOWS) {
      const keys = await scanKeys(redis, `${redis.prefix}rl:{*}:${w.ms}`, SAMPLE);
      const sizes = await Promise.all(keys.map((k) => memoryUsage(redis, k)));
      const fields = await Promise.all(keys.map((k) => redis.client.hlen(k)));
      // The most a window's hash ever holds: 21 buckets (20 + the one being filled), with
      // bucket indices and counts as large as real ones — written under a scratch key, measured, deleted.
      const width = Math.ceil(w.ms / 20);
      const current = Math.floor(Date.now() / width);
      const scratch = `${redis.prefix}rl:{key_bench_scratch}:${w.ms}`;
      await redis.client.hset(scratch, ...Array.from({ length: 21 }, (_, i) => [String(current - i), String(100_000 + i)]).flat());
      await redis.client.pexpire(scratch, w.ms + width);
      const full = await memoryUsage(redis, scratch);
      await redis.client.del(scratch);
      worstFull = Math.max(worstFull, full);
      windowRows.push([w.label, int(keys.length), fixed(average(fields), 1), bytes(average(sizes)), bytes(Math.max(0, ...sizes)), bytes(full)]);
    }
    const sampleIds = seeded.ids.filter((_, i) => i % Math.ceil(seeded.ids.length / SAMPLE) === 0);
    const recordSizes = await Promise.all(sampleIds.map((id) => memoryUsage(redis, `${redis.prefix}key:{${id}}`)));
    const secrets = readFileSync(seeded.file, 'utf8').split('\n').filter(Boolean);
    const secretSample = secrets.filter((_, i) => i % Math.ceil(secrets.length / SAMPLE) === 0);
    const secretSizes = await Promise.all(
      secretSample.map((s) => memoryUsage(redis, `${redis.prefix}secret:${createHash('sha256').update(s).digest('hex')}`)),
    );
    const indexPerKey = (await memoryUsage(redis, `${redis.prefix}key-index`)) / (await redis.client.zcard(`${redis.prefix}key-index`));

    const markdown = [
      `${settings.connections} connections, ${settings.seconds} s per case × ${plural(settings.sideRounds, 'round')}; both cases use the same load script ` +
        `(every request formatted up front, x-api-key set per request). ${int(settings.manyKeys)} keys seeded through the gateway's own ` +
        `RedisKeyStore.put in ${seedSeconds.toFixed(1)} s. Key cache: the default (10k entries, 5 s TTL).`,
      '',
      table(
        ['case', 'req/s', 'p50 ms', 'p99 ms', '× 1 cached key', 'proxy CPU µs/req', 'Redis round trips/req', 'direct commands/req', 'in-script/req', 'errors', 'non-2xx'],
        [one, many].map((r) => [
          r.name, int(r.rps), ms(r.p50), ms(r.p99), ratio(r.rps, one.rps), fixed(r.cpuUsPerReq), r.redis.roundTrips.toFixed(3),
          fmtCommands(r.redis.direct), fmtCommands(r.redis.inScript), int(r.errors), int(r.non2xx),
        ]),
      ),
      '',
      `Key cache misses (GETs of a secret) per request with ${int(settings.manyKeys)} keys: ${missesPerRequest.toFixed(3)}; each costs a GET and an HGETALL before the EVALSHA.`,
      '',
      'Redis memory per active key and window (`MEMORY USAGE … SAMPLES 0` of `<prefix>rl:{<key id>}:<window ms>`; sampled from what the run left, ' +
        'and a full hash of 21 buckets, the most a window ever holds):',
      '',
      table(['window', 'hashes sampled', 'buckets (fields) avg', 'avg', 'max', 'full (21 buckets)'], windowRows),
      '',
      `Per key record (${int(sampleIds.length)} sampled): record hash ${bytes(average(recordSizes))} + secret index ${bytes(average(secretSizes))} ` +
        `+ key-index entry ${bytes(indexPerKey)}; \`used_memory\` grew by ${bytes(memoryPerKey)} per seeded key.`,
    ].join('\n');
    const targets = [
      target('Redis memory ≤ 1 KB per active key per window (full 21-bucket hash)', bytes(worstFull), worstFull <= 1024),
      target(`${int(settings.manyKeys)} keys (cache misses) vs 1 cached key (req/s)`, ratio(many.rps, one.rps), null),
    ];
    return { markdown, targets };
  });
}
