import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';

/** The configured trusted proxies (addresses or CIDRs), built once per config. */
export class TrustedProxies {
  private readonly list = new BlockList();
  private readonly none: boolean;

  constructor(entries: readonly string[]) {
    this.none = entries.length === 0;
    for (const entry of entries) {
      const [address, bits] = entry.split('/');
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.list.addAddress(address, family);
      else this.list.addSubnet(address, Number(bits), family);
    }
  }

  /** Whether `address` (already plain, see plainAddress) is a trusted proxy. */
  has(address: string): boolean {
    if (this.none) return false; // the common case costs nothing (BlockList.check allocates)
    const family = isIP(address);
    return family !== 0 && this.list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) is just `10.0.0.1`. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * The real client: the socket peer, unless the peer is a trusted proxy; then the right-most
 * X-Forwarded-For entry that is not itself trusted (entries left of it could be forged by the client).
 */
export function resolveClientAddress(peer: string, forwardedFor: string | undefined, trusted: TrustedProxies): string {
  const peerAddress = plainAddress(peer);
  if (!forwardedFor || !trusted.has(peerAddress)) return peerAddress;
  const hops = forwardedFor.split(',').map(hopAddress);
  for (let i = hops.length - 1; i >= 0; i--) {
    if (isIP(hops[i]) === 0) return peerAddress; // a garbled chain proves nothing; fall back to what we saw
    if (!trusted.has(hops[i])) return hops[i];
  }
  return hops[0] ?? peerAddress;
}

/**
 * One X-Forwarded-For entry as a plain address. Some proxies (Azure Application Gateway, for one)
 * append the client's port: `203.0.113.7:50123`, `[2001:db8::1]:50123`. Read as garbled, such an
 * entry would make every client behind that proxy count as the proxy itself (one failed-key budget).
 */
function hopAddress(hop: string): string {
  const entry = hop.trim();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(entry);
  if (bracketed) return plainAddress(bracketed[1]);
  const ipv4WithPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(entry);
  return plainAddress(ipv4WithPort ? ipv4WithPort[1] : entry);
}

/** The real client of a request (resolveClientAddress on its socket peer and X-Forwarded-For). */
export function requestClientAddress(req: IncomingMessage, trusted: TrustedProxies): string {
  const forwardedFor = req.headers['x-forwarded-for'];
  return resolveClientAddress(req.socket.remoteAddress ?? '', Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor, trusted);
}
