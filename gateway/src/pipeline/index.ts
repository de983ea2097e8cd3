import { asGatewayError } from '../errors/envelope';
import { clientWentAway, type RequestContext, type Step } from './context';
import { requestId } from './request-id';
import { client } from './client';
import { route } from './route';
import { bodyLimit } from './body-limit';
import { cors } from './cors';
import { identify } from './identify';
import { authenticate } from './authenticate';
import { authorize } from './authorize';
import { rateLimit } from './rate-limit';
import { proxy } from './proxy';
import { proxyUpgrade } from './proxy-upgrade';
import { answerError } from './answer';

/** Logged (never sent) when the client left before its answer: nginx's convention. */
const CLIENT_CLOSED_REQUEST = 499;

/** The request path, top to bottom. Any step may end the request by throwing a GatewayError. */
export const httpSteps: readonly Step[] = [requestId, client, route, cors, bodyLimit, identify, authenticate, authorize, rateLimit, proxy];

/** WebSocket and other upgrades: the same checks, then the upgrade is forwarded instead. */
export const upgradeSteps: readonly Step[] = [requestId, client, route, identify, authenticate, authorize, rateLimit, proxyUpgrade];

/** Runs the steps in order; one catch turns any failure into an envelope; `finish` always runs (access log). */
export async function runPipeline(ctx: RequestContext, steps: readonly Step[], finish: (ctx: RequestContext) => void): Promise<void> {
  try {
    // One turn first, so no step answers from inside node's parser callback: an answer that closes the
    // connection, written there, was followed by answers to requests pipelined behind it (fuzzing suite).
    await undefined;
    for (const step of steps) {
      const pending = step(ctx);
      if (pending) await pending; // most steps are synchronous: no extra turn of the microtask queue for them
      if (ctx.handled) break;
    }
  } catch (thrown) {
    if (clientWentAway(ctx.abort)) {
      // The client went away, which is why the step failed: there is nobody left to answer.
      ctx.status = CLIENT_CLOSED_REQUEST;
      return;
    }
    const err = asGatewayError(thrown, ctx.requestId);
    if (err.code === 'internal_error') {
      ctx.runtime.log.error({ request_id: ctx.requestId, err: err.cause }, 'unexpected error in the request path');
    }
    // A slot held is free before the client reads its answer (see RequestContext.giveBackSlot).
    if (ctx.giveBackSlot) await ctx.giveBackSlot();
    answerError(ctx, err);
  } finally {
    finish(ctx);
  }
}
