import { randomBytes } from 'node:crypto';
import type { RequestContext } from './context';

// A client's own id is kept when it is short and plain, so traces join up; anything else is replaced.
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

// Ids need to be unique, not secret: drawing 12 bytes from a pool refilled every 512 ids costs far
// less than a randomBytes() call (and its syscalls) per request.
const ID_BYTES = 12;
const POOL_BYTES = ID_BYTES * 512;
let pool = randomBytes(POOL_BYTES);
let offset = 0;

export function newRequestId(): string {
  if (offset + ID_BYTES > POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const id = 'req_' + pool.toString('base64url', offset, offset + ID_BYTES);
  offset += ID_BYTES;
  return id;
}

export function requestId(ctx: RequestContext): void {
  const incoming = ctx.req.headers['x-request-id'];
  ctx.requestId = typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : newRequestId();
}
