import type { IncomingHttpHeaders } from 'node:http';
import { upstreamRequestHeaders, type ForwardingFacts } from '../../src/proxy/headers';

const facts = (underscores: 'drop' | 'allow'): ForwardingFacts => ({
  requestId: 'req_1',
  peer: '203.0.113.9',
  peerTrusted: false,
  consumerId: 'key_real',
  consumerTier: 'free',
  underscores,
});

// As node hands them over: names lower-cased.
const incoming: IncomingHttpHeaders = {
  host: 'gw.test',
  'x-custom': 'kept',
  x_custom: 'underscore',
  x_consumer_id: 'key_victim',
  'x-consumer_id': 'key_victim',
  'x_consumer-tier': 'pro',
  x_forwarded_for: '10.0.0.1',
  'x_forwarded-host': 'evil.example',
  x_forwarded_proto: 'https',
  x_forwarded_port: '443',
  x_real_ip: '10.0.0.1',
  forwarded_: 'x',
  x_api_key: 'sk_live_stolen',
  x_request_id: 'forged',
  content_length: '0',
  transfer_encoding: 'chunked',
  proxy_authorization: 'Basic eDp5',
  _forwarded: 'x',
};

const underscored = (headers: Record<string, unknown>) => Object.keys(headers).filter((name) => name.includes('_')).sort();

describe('upstreamRequestHeaders: names with "_"', () => {
  it('drops every one by default, and sets the identity headers itself', () => {
    const out = upstreamRequestHeaders(incoming, facts('drop'));
    expect(underscored(out)).toEqual([]);
    expect(out).toMatchObject({ 'x-custom': 'kept', 'x-consumer-id': 'key_real', 'x-consumer-tier': 'free', 'x-forwarded-for': '203.0.113.9' });
  });

  it('under allow, keeps only names that spell no header the gateway strips, sets or trusts', () => {
    const out = upstreamRequestHeaders(incoming, facts('allow'));
    expect(underscored(out)).toEqual(['_forwarded', 'forwarded_', 'x_custom']);
    expect(out['x-consumer-id']).toBe('key_real');
  });
});
