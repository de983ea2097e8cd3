import { Agent, request, type Dispatcher } from 'undici';
import { envelopeProblem } from './envelope';

/**
 * Steady load for the fault suite: several clients, each sending one request after another at a fixed
 * pace, round-robin over the gateway replicas. A client that cannot reach a replica (refused, reset
 * before an answer) retries on the next one, as a client behind a load balancer would.
 */

export interface LoadClient {
  key: string;
  path: string;
  perSecond: number;
}

export interface Outcome {
  client: number;
  /** Date.now() when the request was first sent, and when its answer (or last failure) ended */
  start: number;
  end: number;
  /** HTTP status; 'transport' when no replica answered; 'truncated' when the answer broke off mid-body */
  status: number | 'transport' | 'truncated';
  /** envelope code of an error answer; 'INVALID' when the body is not a valid envelope for its status */
  code?: string;
  /** X-RateLimit-Limit of the answer: a replica limiting alone (Redis unreachable) announces its share */
  limit?: number;
  retries: number;
  detail?: string;
}

export interface RunningLoad {
  /** Stops sending, waits for the requests in flight, resolves with every outcome in start order. */
  stop(): Promise<Outcome[]>;
}

export function startSteadyLoad(urls: () => string[], clients: LoadClient[], timeoutMs = 10_000): RunningLoad {
  const agent = new Agent({ connections: 16, keepAliveTimeout: 2000, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  const outcomes: Outcome[] = [];
  let running = true;

  const runClient = async (client: LoadClient, index: number) => {
    const interval = 1000 / client.perSecond;
    let next = Date.now();
    let turn = index; // clients start on different replicas
    while (running) {
      const start = Date.now();
      const targets = urls();
      let outcome: Outcome | undefined;
      for (let attempt = 0; attempt < targets.length && !outcome; attempt++) {
        const url = targets[turn++ % targets.length];
        let res: Dispatcher.ResponseData;
        try {
          res = await request(`${url}${client.path}`, { headers: { 'x-api-key': client.key }, dispatcher: agent });
        } catch (err) {
          if (attempt === targets.length - 1) {
            outcome = { client: index, start, end: Date.now(), status: 'transport', retries: attempt, detail: (err as Error).message };
          }
          continue;
        }
        try {
          const text = await res.body.text();
          outcome = { client: index, start, end: Date.now(), status: res.statusCode, retries: attempt };
          if (res.statusCode >= 400) outcome.code = envelopeCode(res.statusCode, res.headers, text);
        } catch (err) {
          // The answer had begun: not retried (a client cannot know whether the request took effect).
          outcome = { client: index, start, end: Date.now(), status: 'truncated', retries: attempt, detail: (err as Error).message };
        }
        const limit = Number(res.headers['x-ratelimit-limit']);
        if (Number.isFinite(limit)) outcome.limit = limit;
      }
      outcomes.push(outcome!);
      next += interval;
      const wait = next - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      else next = Date.now(); // fell behind (slow answers): do not burst to catch up
    }
  };

  const done = Promise.all(clients.map(runClient));
  return {
    stop: async () => {
      running = false;
      await done;
      await agent.close();
      return outcomes.sort((a, b) => a.start - b.start);
    },
  };
}

/** The envelope's code when the answer is a valid envelope for its status (see envelope.ts), else 'INVALID'. */
export function envelopeCode(status: number, headers: Record<string, string | string[] | undefined>, text: string): string {
  return envelopeProblem(status, headers, text) === undefined ? JSON.parse(text).error.code : 'INVALID';
}

/**
 * The worst excess over `limit` in any rolling window of `windowMs`, given the times requests reached
 * the upstream. Windows are shortened by `slackMs`: a request reaches the upstream a little after the
 * limiter admitted it, so a full window of admissions can look up to that much shorter at the upstream.
 * `reachable`: windows that touch none of the `faults` intervals (must be 0); `fault`: the others.
 */
export function overLimit(
  arrivals: number[],
  limit: number,
  windowMs: number,
  faults: Array<[number, number]>,
  slackMs = 100,
): { reachable: number; fault: number } {
  const times = [...arrivals].sort((a, b) => a - b);
  const span = windowMs - slackMs;
  const worst = { reachable: 0, fault: 0 };
  let first = 0;
  for (let last = 0; last < times.length; last++) {
    while (times[first] <= times[last] - span) first++;
    const excess = last - first + 1 - limit;
    if (excess <= 0) continue;
    const from = times[last] - span;
    const touchesFault = faults.some(([a, b]) => from <= b && times[last] >= a);
    const kind = touchesFault ? 'fault' : 'reachable';
    worst[kind] = Math.max(worst[kind], excess);
  }
  return worst;
}
