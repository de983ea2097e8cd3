import { readFileSync } from 'node:fs';
import path from 'node:path';
import { catalogue } from '../../src/errors/catalogue';
import { envelopeResponse, GatewayError, asGatewayError, toEnvelope } from '../../src/errors/envelope';

const readme = readFileSync(path.resolve(__dirname, '../../../README.md'), 'utf8');

/** Rows of the README's error table: | status | `code` | ... */
function readmeErrorRows(): Map<string, number> {
  const rows = new Map<string, number>();
  for (const match of readme.matchAll(/^\|\s*(\d{3})\s*\|\s*`([a-z_]+)`\s*\|/gm)) {
    if (rows.has(match[2])) throw new Error(`README documents ${match[2]} twice`);
    rows.set(match[2], Number(match[1]));
  }
  return rows;
}

describe('error catalogue', () => {
  const codes = Object.keys(catalogue);

  it('has unique snake_case codes, each with one standard status and a message', () => {
    expect(new Set(codes).size).toBe(codes.length);
    for (const [code, entry] of Object.entries(catalogue)) {
      expect(code).toMatch(/^[a-z]+(_[a-z]+)*$/);
      expect(entry.status).toBeGreaterThanOrEqual(400);
      expect(entry.status).toBeLessThan(600);
      expect(entry.message.length).toBeGreaterThan(10);
    }
  });

  it('is documented in the README error table with the same status, and the table has nothing else', () => {
    const rows = readmeErrorRows();
    expect([...rows.keys()].sort()).toEqual([...codes].sort());
    for (const [code, entry] of Object.entries(catalogue)) expect(rows.get(code)).toBe(entry.status);
  });

  it('keeps the seed contract for the codes the seed shows', () => {
    expect(catalogue.invalid_api_key).toEqual({ status: 401, message: 'The provided API key is invalid or has been revoked' });
    expect(catalogue.internal_error.message).toBe(
      'An unexpected error occurred. Please try again or contact support if the issue persists.',
    );
    expect(catalogue.rate_limit_exceeded.status).toBe(429);
    expect(catalogue.invalid_parameters.status).toBe(400);
  });
});

describe('envelopes', () => {
  it('is exactly {error:{code,message}} without details, and carries details when given', () => {
    expect(toEnvelope(new GatewayError('forbidden'))).toEqual({ error: { code: 'forbidden', message: catalogue.forbidden.message } });
    const withDetails = toEnvelope(new GatewayError('payload_too_large', { details: { max_body_bytes: 10 } }));
    expect(Object.keys(withDetails.error)).toEqual(['code', 'message', 'details']);
  });

  it('turns any non-GatewayError into internal_error with the request id and nothing of the original message', () => {
    const err = asGatewayError(new Error('secret sk_live_abc leaked in a stack'), 'req_1');
    const { status, headers, body } = envelopeResponse(err, 'req_1');
    expect(status).toBe(500);
    expect(headers['content-type']).toBe('application/json; charset=utf-8');
    expect(headers['x-request-id']).toBe('req_1');
    expect(JSON.parse(body)).toEqual({
      error: { code: 'internal_error', message: catalogue.internal_error.message, details: { request_id: 'req_1' } },
    });
    expect(body).not.toContain('sk_live');
  });
});
