// The floor: the bare undici proxy (bare-proxy.mjs) plus the least a rate-limited gateway must do per
// request — SHA-256 of the key and one auto-pipelined EVALSHA of sluice's own sliding-window script
// deciding two windows, through ioredis. sluice's full path is measured as a
// ratio to this. The floor stays on ioredis whatever client sluice uses (issue #16: a faster client shows
// as a better ratio). REDIS_CLIENT=node-redis-5 (@redis/client, what sluice uses) or node-redis (6)
// makes the same EVALSHA through node-redis instead, for the client comparison (bench scenario `clients`).
import { createHash } from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import Redis from 'ioredis';
import { Pool } from 'undici';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { SLIDING_WINDOW } = require(path.join(root, process.env.SLUICE_SCRIPTS ?? 'dist/ratelimit/scripts.js'));

// The open tier of the headline: two windows that are never reached.
const WINDOWS = [
  [1_000_000_000, 60_000],
  [10_000_000_000, 86_400_000],
];

/** decide(keys, args): the script's reply, through the client under test; resolves once it is connected. */
async function connect(client) {
  if (client === 'ioredis') {
    const redis = new Redis(process.env.REDIS_URL, { enableAutoPipelining: true, maxRetriesPerRequest: 0 });
    redis.defineCommand('slidingWindow', { lua: SLIDING_WINDOW });
    await new Promise((resolve) => redis.once('ready', resolve));
    return (keys, args) => redis.slidingWindow(keys.length, ...keys, ...args);
  }
  // node-redis writes every command of one tick in one go (its own pipelining); arguments are strings.
  const { createClient } = require(client === 'node-redis-5' ? '@redis/client' : 'redis');
  const redis = createClient({ url: process.env.REDIS_URL, disableOfflineQueue: true });
  await redis.connect();
  const sha = await redis.scriptLoad(SLIDING_WINDOW);
  return (keys, args) => redis.evalSha(sha, { keys, arguments: args.map(String) });
}
const decide = await connect(process.env.REDIS_CLIENT ?? 'ioredis');
const pool = new Pool(process.env.UPSTREAM, { connections: 128 });

const server = http.createServer(async (req, res) => {
  try {
    const id = createHash('sha256').update(String(req.headers['x-api-key'])).digest('hex');
    const keys = WINDOWS.map(([, ms]) => `floor:rl:{${id}}:${ms}`);
    const decision = await decide(keys, [1, '', ...WINDOWS.flat()]);
    if (Number(decision[0]) !== 1) return void res.writeHead(429).end();
    const upstream = await pool.request({ path: req.url, method: req.method, headers: { 'x-forwarded-for': req.socket.remoteAddress } });
    res.writeHead(upstream.statusCode, upstream.headers);
    upstream.body.pipe(res);
  } catch {
    res.writeHead(502).end();
  }
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
process.on('SIGTERM', () => process.exit(0)); // a normal exit, so --cpu-prof writes its profile
