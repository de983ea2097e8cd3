import { BlockList, isIP } from 'node:net';

/** The configured trusted proxies (addresses or CIDRs) as a BlockList, built once per config. */
export function trustedProxyList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split('/');
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  return list;
}

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) is just `10.0.0.1`. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

function isTrusted(list: BlockList, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/**
 * The real client: the socket peer, unless the peer is a trusted proxy; then the right-most
 * X-Forwarded-For entry that is not itself trusted (entries left of it could be forged by the client).
 */
export function resolveClientAddress(peer: string, forwardedFor: string | undefined, trusted: BlockList): string {
  const peerAddress = plainAddress(peer);
  if (!forwardedFor || !isTrusted(trusted, peerAddress)) return peerAddress;
  const hops = forwardedFor.split(',').map((hop) => plainAddress(hop.trim()));
  for (let i = hops.length - 1; i >= 0; i--) {
    if (isIP(hops[i]) === 0) return peerAddress; // a garbled chain proves nothing; fall back to what we saw
    if (!isTrusted(trusted, hops[i])) return hops[i];
  }
  return hops[0] ?? peerAddress;
}

export function peerIsTrusted(peer: string, trusted: BlockList): boolean {
  return isTrusted(trusted, plainAddress(peer));
}
