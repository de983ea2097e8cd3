import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { REPO_ROOT } from '../support/gateway';
import { freePort } from '../support/ports';

// The README's first command, as a newcomer runs it: `npm start` builds, starts the demo upstream and
// the gateway with config/gateway.example.yaml, and prints a key and a curl line that works, and an
// admin token it generated with the admin curl lines that use it.
// Ports come from the example's ${SLUICE_PORT:-8080}-style defaults, moved to free ports here.

// `npm start` runs tsc first: ~14 s on an idle machine, and CI runs this beside another suite's load on
// two cores (one CI run took over 60 s). Waiting longer is honest here; the banner wait fails with the output.
const BANNER_WAIT_MS = 150_000;

/** The newcomer has not set SLUICE_ADMIN_TOKEN. */
function withoutAdminToken(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { SLUICE_ADMIN_TOKEN: _, ...rest } = env;
  return rest;
}

it('npm start prints a demo key and a curl line that gets a proxied 200, and a generated admin token with admin curl lines that work', async () => {
  const ports = { SLUICE_PORT: await freePort(), SLUICE_ADMIN_PORT: await freePort(), DEMO_UPSTREAM_PORT: await freePort() };
  const child = spawn('npm', ['start', '--silent'], {
    cwd: REPO_ROOT,
    env: { ...withoutAdminToken(process.env), ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so npm and the node it starts stop together
  });
  const output: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => output.push(line));
  try {
    const banner: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no banner within ${BANNER_WAIT_MS / 1000} s:\n${output.join('\n')}`)), BANNER_WAIT_MS);
      child.once('exit', (code) => reject(new Error(`npm start exited with ${code}:\n${output.join('\n')}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        output.push(line);
        if (!line.startsWith('{')) banner.push(line.trim()); // the JSON log lines are not the banner
        if (line.includes('Ctrl-C stops it')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const curlLine = banner.find((line) => line.startsWith('curl '))!;

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

    // The example ships no admin token: the demo generated one (random, long enough) and printed
    // ready-to-paste lines that set it and call the key API, as the README's admin curls do.
    const token = /^admin token \(generated for this run; set SLUICE_ADMIN_TOKEN to choose one\): (\S+)$/.exec(banner.find((line) => line.startsWith('admin token')) ?? '');
    expect(token).not.toBeNull();
    expect(token![1]).toMatch(/^[0-9a-f]{64}$/);
    const adminLines = banner.slice(banner.findIndex((line) => line.startsWith('the admin API'))).filter((line) => line.startsWith('export ') || line.startsWith('curl '));
    expect(adminLines[0]).toBe(`export SLUICE_ADMIN_TOKEN=${token![1]}`);
    expect(adminLines[1]).toBe(`export ADMIN="http://127.0.0.1:${ports.SLUICE_ADMIN_PORT}" AUTH="Authorization: Bearer $SLUICE_ADMIN_TOKEN"`);
    const pasted = spawnSync('bash', ['-c', `set -e; ${adminLines.join('; echo; ')}`], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(pasted.status).toBe(0);
    const [list, created] = pasted.stdout.trim().split('\n').map((line) => JSON.parse(line));
    expect(list.keys.map((k: { name: string }) => k.name)).toEqual(['demo']);
    expect(created).toMatchObject({ name: 'Acme', tier: 'free', status: 'active' });
    // The token appears in the banner only, never in a log line.
    expect(output.filter((line) => line.startsWith('{')).join('\n')).not.toContain(token![1]);
  } finally {
    if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
  }
}, BANNER_WAIT_MS + 30_000);
