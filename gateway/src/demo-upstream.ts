import http from 'node:http';

/** A tiny backend for the demo: answers every request with what it saw (minus nothing secret: the gateway strips the key). */
export function startDemoUpstream(host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let bodyBytes = 0;
    req.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
    req.on('end', () => {
      const body = JSON.stringify({
        service: 'demo-upstream',
        method: req.method,
        path: req.url,
        consumer_id: req.headers['x-consumer-id'] ?? null,
        consumer_tier: req.headers['x-consumer-tier'] ?? null,
        request_id: req.headers['x-request-id'] ?? null,
        body_bytes: bodyBytes,
      });
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
      res.end(body + '\n');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

// `node dist/demo-upstream.js`: the demo backend on its own (docker-compose runs it this way).
if (require.main === module) {
  const host = process.env.HOST ?? '0.0.0.0';
  const port = Number(process.env.PORT ?? 9001);
  void startDemoUpstream(host, port).then(() => console.log(JSON.stringify({ msg: 'demo upstream listening', host, port })));
  process.once('SIGTERM', () => process.exit(0));
}
