import { request } from 'undici';
import { startKeyedGateway, type TestGateway } from '../support/gateway';
import { expectEnvelope, send } from '../support/http';

// SIGTERM: readiness turns false first, then the listener stops accepting, requests in flight finish,
// and the process exits 0.

const KEY = 'sk_test_lifecycle_0123456789';
let gateway: TestGateway;
let stop: (signal?: NodeJS.Signals) => Promise<void>;

beforeAll(async () => {
  ({ gateway, stop } = await startKeyedGateway(KEY, { lifecycle: { drain_delay: '700ms', grace: '10s' } }));
});

afterAll(() => stop?.('SIGKILL'));

it('drains on SIGTERM: not ready, then no new connections, in-flight requests complete, exit 0', async () => {
  expect((await send(`${gateway.adminUrl}/readyz`)).status).toBe(200);
  expect((await send(`${gateway.adminUrl}/healthz`)).json).toEqual({ status: 'ok' });

  // Requests that are in flight when the signal arrives, each on its own connection.
  const inFlight = [1500, 2000, 2500].map((ms) =>
    request(`${gateway.url}/slow?ms=${ms}`, { headers: { 'x-api-key': KEY }, reset: true }).then(async (res) => ({
      status: res.statusCode,
      body: await res.body.json(),
    })),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  gateway.process.kill('SIGTERM');
  await new Promise((resolve) => setTimeout(resolve, 200));

  // During drain_delay: not ready, but still serving new requests (load balancers are catching up).
  const notReady = await send(`${gateway.adminUrl}/readyz`);
  expect(expectEnvelope(notReady, 503, 'service_unavailable').details).toEqual({ reason: 'draining' });
  expect((await request(`${gateway.url}/ok`, { headers: { 'x-api-key': KEY }, reset: true })).statusCode).toBe(200);

  // After drain_delay the listener is closed.
  await new Promise((resolve) => setTimeout(resolve, 800));
  await expect(request(`${gateway.url}/ok`, { headers: { 'x-api-key': KEY }, reset: true })).rejects.toMatchObject({ code: 'ECONNREFUSED' });

  const results = await Promise.all(inFlight);
  expect(results).toEqual([1500, 2000, 2500].map(() => ({ status: 200, body: { ok: true } })));
  expect(await gateway.exited).toBe(0);
  expect(gateway.output.some((line) => line.includes('"msg":"stopped"'))).toBe(true);
});
