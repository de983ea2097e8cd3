// Baseline: the least a proxy can do with undici — one Pool, forward, pipe back. No checks at all.
import http from 'node:http';
import { Pool } from 'undici';

const pool = new Pool(process.env.UPSTREAM, { connections: 128 });
const server = http.createServer(async (req, res) => {
  try {
    const upstream = await pool.request({ path: req.url, method: req.method, headers: { 'x-forwarded-for': req.socket.remoteAddress } });
    res.writeHead(upstream.statusCode, upstream.headers);
    upstream.body.pipe(res);
  } catch {
    res.writeHead(502).end();
  }
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
