import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { REPO_ROOT } from '../support/gateway';
import { freePort } from '../support/ports';

// The README's first command, as a newcomer runs it: `npm start` builds, starts the demo upstream and
// the gateway with config/gateway.example.yaml, and prints a key and a curl line that works.
// Ports come from the example's ${SLUICE_PORT:-8080}-style defaults, moved to free ports here.

it('npm start prints a demo key and a curl line that gets a proxied 200', async () => {
  const ports = { SLUICE_PORT: await freePort(), SLUICE_ADMIN_PORT: await freePort(), DEMO_UPSTREAM_PORT: await freePort() };
  const child = spawn('npm', ['start', '--silent'], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so npm and the node it starts stop together
  });
  const output: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => output.push(line));
  try {
    const curlLine = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no curl line within 60 s:\n${output.join('\n')}`)), 60_000);
      child.once('exit', (code) => reject(new Error(`npm start exited with ${code}:\n${output.join('\n')}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        output.push(line);
        if (line.trim().startsWith('curl ')) {
          clearTimeout(timer);
          resolve(line.trim());
        }
      });
    });

    const match = /^curl -i -H 'x-api-key: (\S+)' (http:\/\/\S+)$/.exec(curlLine);
    expect(match).not.toBeNull();
    const [, key, url] = match!;
    expect(url).toBe(`http://127.0.0.1:${ports.SLUICE_PORT}/v1/users`);
    expect(output.join('\n')).toContain(`demo API key (tier free, shown once): ${key}`);

    const res = await request(url, { headers: { 'x-api-key': key } });
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ service: 'demo-upstream', method: 'GET', path: '/v1/users', consumer_tier: 'free' });

    const denied = await request(url);
    expect(denied.statusCode).toBe(401);
    await denied.body.dump();
  } finally {
    if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
  }
});
