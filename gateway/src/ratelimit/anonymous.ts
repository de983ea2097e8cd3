import { isIP } from 'node:net';

// Callers without a key (auth: none / optional routes) are counted per client address. The subject
// starts with "anon:", which no key id can (they are key_…), so an address never shares a key's counters.

/**
 * The rate-limit subject of an anonymous caller at `address` (as resolved by http/client-address.ts):
 * `anon:<IPv4>`, or `anon:<first 64 bits>::/64` for IPv6, since one subscriber usually holds a whole
 * /64 and could otherwise take a fresh address (a fresh budget) per request. IPv4-mapped IPv6 counts
 * as its IPv4 address.
 */
export function anonymousSubject(address: string): string {
  const groups = ipv6Groups(address);
  if (!groups) return `anon:${address}`;
  if (isIpv4Mapped(groups)) return `anon:${groups[6] >> 8}.${groups[6] & 0xff}.${groups[7] >> 8}.${groups[7] & 0xff}`;
  return `anon:${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** ::ffff:a.b.c.d, in any spelling (::ffff:102:304 too): 80 zero bits, then 16 one bits. */
function isIpv4Mapped(groups: number[]): boolean {
  return groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
}

/** The eight 16-bit groups of an IPv6 address (a zone like %eth0 dropped), or undefined for anything else. */
function ipv6Groups(address: string): number[] | undefined {
  const plain = address.split('%')[0];
  if (isIP(plain) !== 6) return undefined;
  let text = plain.toLowerCase();
  // A trailing dotted quad (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) is two groups.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number);
    text = text.slice(0, dotted.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const parse = (part: string | undefined) => (part ? part.split(':').map((g) => parseInt(g, 16)) : []);
  const left = parse(head);
  const right = parse(tail);
  const zeros = tail === undefined ? [] : Array<number>(8 - left.length - right.length).fill(0);
  return [...left, ...zeros, ...right];
}
