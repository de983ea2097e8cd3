// Baseline: the least a proxy can do with undici — one Pool, forward, pipe back. No checks at all.
// A request body (the large-body scenario) is streamed through; bodiless requests are sent as before.
import http from 'node:http';
import { Pool } from 'undici';

const pool = new Pool(process.env.UPSTREAM, { connections: 128 });
const server = http.createServer(async (req, res) => {
  const headers = { 'x-forwarded-for': req.socket.remoteAddress };
  const length = req.headers['content-length'];
  const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
  if (length !== undefined) headers['content-length'] = length;
  try {
    const upstream = await pool.request({ path: req.url, method: req.method, headers, body: hasBody ? req : undefined });
    res.writeHead(upstream.statusCode, upstream.headers);
    upstream.body.pipe(res);
  } catch {
    res.writeHead(502).end();
  }
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
