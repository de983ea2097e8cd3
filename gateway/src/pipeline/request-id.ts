import { randomBytes } from 'node:crypto';
import type { RequestContext } from './context';

// A client's own id is kept when it is short and plain, so traces join up; anything else is replaced.
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function newRequestId(): string {
  return 'req_' + randomBytes(12).toString('base64url');
}

export function requestId(ctx: RequestContext): void {
  const incoming = ctx.req.headers['x-request-id'];
  ctx.requestId = typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : newRequestId();
}
