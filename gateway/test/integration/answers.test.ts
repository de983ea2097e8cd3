import { startKeyedGateway, type TestGateway } from '../support/gateway';
import { parseRawResponse, rawExchange, send } from '../support/http';
import { changed, scrape } from '../support/metrics';
import { waitFor } from '../support/wait';

// Every answer the gateway makes itself goes through one writer (pipeline/answer.ts): whichever way
// it came — a step's failure, a framing refusal, CONNECT, a request node's parser refused, shedding —
// it is an envelope, counted once in sluice_errors_total and sluice_requests_total, and logged once.

const KEY = 'sk_test_answers_0000000000000';

let gateway: TestGateway;
let stopGateway: () => Promise<void>;

beforeAll(async () => {
  ({ gateway, stop: stopGateway } = await startKeyedGateway(KEY, { listen: { host: '127.0.0.1', port: 0, max_in_flight: 1 } }));
});

afterAll(() => stopGateway?.());

/** The access-log lines of one request id. */
const logLines = (requestId: string) =>
  gateway.output.filter((line) => line.includes('"msg":"request"')).map((line) => JSON.parse(line)).filter((entry) => entry.request_id === requestId);

/** Sends `payload` raw; the answer, what it changed in the metrics, and its access-log lines. */
async function exchange(payload: string) {
  const before = await scrape(gateway.adminUrl);
  const answer = parseRawResponse(await rawExchange(gateway.port, payload));
  const requestId = answer.headers['x-request-id'];
  await waitFor(() => logLines(requestId).length > 0, 2000);
  const after = await scrape(gateway.adminUrl);
  return { answer, errors: changed(before, after, 'sluice_errors_total'), requests: changed(before, after, 'sluice_requests_total'), logged: logLines(requestId) };
}

it.each([
  ['a request line node refuses', 'GET /ok HTTP/1.1 extra\r\nhost: x\r\n\r\n', 400, 'invalid_request', 'none', 'UNKNOWN'],
  ['headers node refuses', `GET /ok HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n`, 400, 'invalid_request', 'none', 'UNKNOWN'],
  ['conflicting Content-Length and Transfer-Encoding (node refuses)', `POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'invalid_request', 'none', 'UNKNOWN'],
  ['a framing refusal (Transfer-Encoding in HTTP/1.0)', `POST /echo HTTP/1.0\r\nhost: x\r\nx-api-key: ${KEY}\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'invalid_request', 'none', 'POST'],
  ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n', 400, 'invalid_request', 'none', 'CONNECT'],
  ['a step failure (no key)', 'GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', 401, 'missing_api_key', 'all', 'GET'],
])('%s: an envelope, counted once and logged once', async (_what, payload, status, code, route, method) => {
  const { answer, errors, requests, logged } = await exchange(payload);
  expect(answer.status).toBe(status);
  expect(JSON.parse(answer.body).error.code).toBe(code);
  expect(errors).toEqual({ [`sluice_errors_total{code="${code}",status="${status}"}`]: 1 });
  expect(requests).toEqual({ [`sluice_requests_total{method="${method}",route="${route}",status="${status}"}`]: 1 });
  expect(logged).toHaveLength(1);
  expect(logged[0]).toMatchObject({ status, code });
});

it('shedding: a 503 envelope with Retry-After, counted once and logged once', async () => {
  const busy = send(`${gateway.url}/slow?ms=800`, { headers: { 'x-api-key': KEY } }); // the one request in flight
  await new Promise((resolve) => setTimeout(resolve, 200));
  const { answer, errors, logged } = await exchange(`GET /ok HTTP/1.1\r\nhost: x\r\nx-api-key: ${KEY}\r\nconnection: close\r\n\r\n`);
  expect((await busy).status).toBe(200);
  expect(answer.status).toBe(503);
  expect(answer.headers['retry-after']).toBe('1');
  expect(errors).toEqual({ 'sluice_errors_total{code="service_unavailable",status="503"}': 1 });
  expect(logged).toHaveLength(1);
});
