import type { IncomingHttpHeaders } from 'node:http';
import { upstreamRequestHeaders, type ForwardingFacts } from '../../src/proxy/headers';

const facts = (underscores: 'drop' | 'allow'): ForwardingFacts => ({
  requestId: 'req_1',
  peer: '203.0.113.9',
  peerTrusted: false,
  consumerId: 'key_real',
  consumerTier: 'free',
  underscores,
  encrypted: false,
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
  x_client_cert_subject: 'CN=forged',
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

describe('upstreamRequestHeaders: X-Client-Cert-Subject', () => {
  const sent: IncomingHttpHeaders = { host: 'gw.test', 'x-client-cert-subject': 'CN=forged' };

  it('drops a client\'s own copy when the peer is not a trusted proxy', () => {
    expect(upstreamRequestHeaders(sent, facts('allow'))['x-client-cert-subject']).toBeUndefined();
  });

  it('keeps a trusted proxy\'s (it terminated TLS in front of us) when this listener verifies no certificates', () => {
    expect(upstreamRequestHeaders(sent, { ...facts('drop'), peerTrusted: true })['x-client-cert-subject']).toBe('CN=forged');
  });

  it('on a listener that verifies client certificates, sends only the verified subject, or none', () => {
    expect(upstreamRequestHeaders(sent, { ...facts('drop'), peerTrusted: true, clientCertSubject: 'CN=alice' })['x-client-cert-subject']).toBe('CN=alice');
    expect(upstreamRequestHeaders(sent, { ...facts('drop'), peerTrusted: true, clientCertSubject: null })['x-client-cert-subject']).toBeUndefined();
  });
});
