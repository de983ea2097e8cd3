import { resolveClientAddress, TrustedProxies, plainAddress } from '../../src/http/client-address';

describe('resolveClientAddress', () => {
  const trusted = new TrustedProxies(['10.0.0.0/8', '127.0.0.1', 'fd00::/8']);

  it('uses the socket peer when the peer is not trusted, whatever X-Forwarded-For says', () => {
    expect(resolveClientAddress('203.0.113.9', '1.2.3.4', trusted)).toBe('203.0.113.9');
  });
  it('takes the right-most untrusted hop behind trusted proxies', () => {
    expect(resolveClientAddress('127.0.0.1', '6.6.6.6, 198.51.100.7, 10.1.2.3', trusted)).toBe('198.51.100.7');
  });
  it('reads entries that carry a port (some proxies append it)', () => {
    expect(resolveClientAddress('10.0.0.1', '198.51.100.7:50123', trusted)).toBe('198.51.100.7');
    expect(resolveClientAddress('10.0.0.1', '[2001:db8::7]:50123, 10.1.2.3:443', trusted)).toBe('2001:db8::7');
    expect(resolveClientAddress('10.0.0.1', '[2001:db8::7]', trusted)).toBe('2001:db8::7');
    expect(resolveClientAddress('10.0.0.1', '198.51.100.7:99999999', trusted)).toBe('10.0.0.1'); // not a port
  });
  it('falls back to the peer on a garbled chain', () => {
    expect(resolveClientAddress('10.0.0.1', 'not-an-ip', trusted)).toBe('10.0.0.1');
  });
  it('uses the peer when a trusted proxy sent no X-Forwarded-For', () => {
    expect(resolveClientAddress('10.0.0.1', undefined, trusted)).toBe('10.0.0.1');
  });
  it('treats IPv4-mapped IPv6 peers as IPv4', () => {
    expect(plainAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(resolveClientAddress('::ffff:127.0.0.1', '198.51.100.7', trusted)).toBe('198.51.100.7');
  });
  it('supports IPv6 CIDRs', () => {
    expect(resolveClientAddress('fd12::1', '2001:db8::5', trusted)).toBe('2001:db8::5');
  });
  it('trusts nobody with an empty list', () => {
    expect(resolveClientAddress('127.0.0.1', '1.2.3.4', new TrustedProxies([]))).toBe('127.0.0.1');
  });
});
