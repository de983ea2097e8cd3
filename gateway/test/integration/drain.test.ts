import WebSocket from 'ws';
import { Agent, request } from 'undici';
import { startKeyedGateway, type TestGateway } from '../support/gateway';

// SIGTERM during steady traffic of long and short requests, keep-alive connections and a WebSocket:
// every request the gateway accepted completes; the WebSocket is closed with 1001 after the grace.

const KEY = 'sk_test_drain_0000000000000000';
let gateway: TestGateway;
let stop: (signal?: NodeJS.Signals) => Promise<void>;

beforeAll(async () => {
  ({ gateway, stop } = await startKeyedGateway(KEY, { lifecycle: { drain_delay: '500ms', grace: '3s' } }));
});

afterAll(() => stop?.('SIGKILL'));

it('loses no accepted request under steady load, and closes WebSockets with 1001 after the grace', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/ws`, { headers: { 'x-api-key': KEY } });
  await new Promise((resolve, reject) => ws.once('message', resolve).once('error', reject));
  const closed = new Promise<{ code: number; at: number }>((resolve) => ws.once('close', (code) => resolve({ code, at: Date.now() })));

  const agent = new Agent({ connections: 8, keepAliveTimeout: 10_000 });
  const outcomes = new Map<string, string>(); // request id → "200" or an error code
  let stop = false;
  let n = 0;
  const client = async (long: boolean) => {
    while (!stop) {
      const id = `drain-${n++}`;
      try {
        const res = await request(`${gateway.url}/${long ? 'slow?ms=1200' : 'ok'}`, { headers: { 'x-api-key': KEY, 'x-request-id': id }, dispatcher: agent });
        await res.body.dump();
        outcomes.set(id, String(res.statusCode));
      } catch (err) {
        outcomes.set(id, (err as { code?: string }).code ?? 'error');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  const load = Promise.all([client(true), client(true), client(false), client(false), client(false)]);
  await new Promise((resolve) => setTimeout(resolve, 700));
  const signalledAt = Date.now();
  gateway.process.kill('SIGTERM');
  expect(await gateway.exited).toBe(0);
  stop = true;
  await load;
  await agent.close();

  // Accepted = the gateway logged it. Each of those must have reached the client as a 200.
  const accepted = gateway.output
    .filter((line) => line.includes('"msg":"request"'))
    .map((line) => JSON.parse(line).request_id as string)
    .filter((id) => id.startsWith('drain-'));
  const failedAccepted = accepted.filter((id) => outcomes.get(id) !== '200');
  const refused = [...outcomes.values()].filter((v) => v !== '200');
  console.log(
    `drain under load: ${outcomes.size} requests sent, ${accepted.length} accepted, ${failedAccepted.length} of those failed; ` +
      `${refused.length} not accepted after the listener closed (${[...new Set(refused)].join(', ')})`,
  );
  expect(accepted.length).toBeGreaterThan(20);
  expect(failedAccepted).toEqual([]);

  const wsClose = await closed;
  expect(wsClose.code).toBe(1001);
  expect(wsClose.at - signalledAt).toBeGreaterThanOrEqual(500 + 3000 - 100); // after drain_delay + grace
});
