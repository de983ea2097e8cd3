import { isValidHost } from '../../src/http/host';

describe('isValidHost (RFC 9112 §3.2: uri-host [":" port])', () => {
  it.each([
    'example.com',
    'example.com:8080',
    'EXAMPLE.COM.',
    'localhost',
    'localhost:1',
    'my_host.internal',
    'xn--bcher-kva.example',
    '127.0.0.1',
    '127.0.0.1:65535',
    '999.1.1.1', // not an IPv4 address, but a well-formed reg-name
    '[::1]',
    '[::1]:80',
    '[2001:db8::7]:443',
    '[::ffff:10.0.0.1]',
    '[v1.fe80::a+en1]',
    "a-b.c~d!$&'()*+,;=",
  ])('accepts %s', (host) => {
    expect(isValidHost(host)).toBe(true);
  });

  it.each([
    '',
    ':80',
    'user:pass@evil.example',
    'user@evil.example',
    'evil.example/x?y',
    'evil.example/',
    'evil.example?',
    'evil.example#',
    'evil example',
    ' evil.example',
    '<script>',
    'evil"example',
    'evil\\example',
    'evil`example',
    'evil{x}',
    'evil|x',
    'evil^x',
    'evil[x]',
    'evil.example:',
    'evil.example:80:80',
    'evil.example:8o',
    'evil.example: 80',
    'evil.example:+80',
    'evil.example:-1',
    'evil.example:65536',
    'evil.example:000080',
    '%65vil.example',
    'evil%2eexample',
    'évil.example',
    'evil\x00.example',
    'evil\t.example',
    '[::1',
    '::1',
    '[::1]x',
    '[::1]:',
    '[::1]:x',
    '[zz::1]',
    '[::1%eth0]',
    '[::1%25eth0]',
    '[127.0.0.1]',
    '[]',
    '[v1.]',
    '[vz.x]',
    '[v1.a/b]',
    '[[::1]]',
  ])('refuses %j', (host) => {
    expect(isValidHost(host)).toBe(false);
  });
});
