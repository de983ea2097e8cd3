// The benchmark's upstream: the smallest useful HTTP server, run in its own process.
//   any path      → 200 {"ok":true} (the request body, if any, is read and dropped)
//   POST /echo    → the request body streamed back (large-body scenario)
//   GET /bytes/N  → N bytes, streamed in 64 KiB chunks (large-download scenario)
import http from 'node:http';

const body = JSON.stringify({ ok: true });
const chunk = Buffer.alloc(64 * 1024, 'x');

/** Writes `left` bytes of `chunk`, respecting backpressure. */
function sendBytes(res, left) {
  while (left > 0) {
    const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
    left -= piece.length;
    if (!res.write(piece)) return res.once('drain', () => sendBytes(res, left));
  }
  res.end();
}

const server = http.createServer((req, res) => {
  if (req.url === '/echo' && req.method === 'POST') {
    const length = req.headers['content-length'];
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(length ? { 'content-length': length } : {}) });
    req.pipe(res);
    return;
  }
  if (req.url.startsWith('/bytes/')) {
    const size = Number(req.url.slice('/bytes/'.length));
    req.resume();
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    sendBytes(res, size);
    return;
  }
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
