import { anonymousSubject } from '../../src/ratelimit/anonymous';
import { KEY_ID_PATTERN, generateKeyId } from '../../src/keys/records';

describe('the rate-limit subject of an anonymous caller', () => {
  test.each([
    ['203.0.113.7', 'anon:203.0.113.7'],
    ['10.0.0.1', 'anon:10.0.0.1'],
  ])('an IPv4 address is its own subject: %s', (address, subject) => {
    expect(anonymousSubject(address)).toBe(subject);
  });

  test.each([
    ['::ffff:203.0.113.7'],
    ['::FFFF:203.0.113.7'],
    ['::ffff:cb00:7107'],
    ['0:0:0:0:0:ffff:203.0.113.7'],
    ['0000:0000:0000:0000:0000:ffff:cb00:7107'],
  ])('IPv4-mapped IPv6, in any spelling, counts as the IPv4 address: %s', (address) => {
    expect(anonymousSubject(address)).toBe('anon:203.0.113.7');
  });

  test('every address of one /64 shares a subject, whatever its spelling', () => {
    const sameSlash64 = [
      '2001:db8:1:2::1',
      '2001:db8:1:2:ffff:ffff:ffff:ffff',
      '2001:0DB8:0001:0002:0000:0000:0000:0009',
      '2001:db8:1:2:a:b:c:d',
      '2001:db8:1:2::1.2.3.4',
      '2001:db8:1:2::1%eth0',
    ];
    const subjects = new Set(sameSlash64.map(anonymousSubject));
    expect([...subjects]).toEqual(['anon:2001:db8:1:2::/64']);
  });

  test('neighbouring /64s get subjects of their own', () => {
    const subjects = ['2001:db8:1:2::1', '2001:db8:1:3::1', '2001:db8:2:2::1', '2001:db9:1:2::1', '3001:db8:1:2::1'].map(anonymousSubject);
    expect(new Set(subjects).size).toBe(subjects.length);
  });

  test.each([
    ['::1', 'anon:0:0:0:0::/64'],
    ['::', 'anon:0:0:0:0::/64'],
    ['2001:db8::', 'anon:2001:db8:0:0::/64'],
    ['fe80::1%eth0', 'anon:fe80:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', 'anon:64:ff9b:0:0::/64'], // NAT64: an IPv6 prefix, not a mapped IPv4 address
  ])('compressed and special IPv6 forms: %s → %s', (address, subject) => {
    expect(anonymousSubject(address)).toBe(subject);
  });

  test('never collides with a key id, and carries no braces (the limiter wraps it in one hash tag)', () => {
    for (const address of ['203.0.113.7', '2001:db8::1', '::ffff:10.0.0.1', '']) {
      const subject = anonymousSubject(address);
      expect(subject.startsWith('anon:')).toBe(true);
      expect(subject).not.toMatch(KEY_ID_PATTERN);
      expect(subject).not.toMatch(/[{}]/);
    }
    expect(generateKeyId().startsWith('anon:')).toBe(false);
  });
});
