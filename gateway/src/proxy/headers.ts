import type { IncomingHttpHeaders } from 'node:http';

// Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

// Forwarding headers an upstream may believe: kept only from a trusted proxy (X-Forwarded-* are rebuilt).
const FORWARDING = new Set(['forwarded', 'x-real-ip']);

// Set by the gateway on a listener that verifies client certificates; else kept only from a trusted
// proxy (one that terminates TLS in front of us), as the forwarding headers are: a client may not forge it.
const CLIENT_CERT_SUBJECT = 'x-client-cert-subject';

// What the client may not tell the upstream: its key, and identities only the gateway asserts.
// `expect` is answered by our own server (100-continue); `host` is the upstream's own.
const CLIENT_MUST_NOT_SEND = new Set(['x-api-key', 'x-consumer-id', 'x-consumer-tier', 'host', 'expect']);

/**
 * Whether a header name, read with `_` as `-` (as CGI, WSGI and Rack read it), is one the gateway
 * strips, sets or trusts: such a spelling is never forwarded, even under `underscores_in_headers: allow`.
 */
function spellsGatewayHeader(name: string): boolean {
  const dashed = name.replace(/_/g, '-');
  return (
    HOP_BY_HOP.has(dashed) ||
    FORWARDING.has(dashed) ||
    CLIENT_MUST_NOT_SEND.has(dashed) ||
    dashed.startsWith('x-forwarded-') ||
    dashed === 'x-request-id' ||
    dashed === CLIENT_CERT_SUBJECT ||
    dashed === 'content-length'
  );
}

const NOTHING_LISTED: ReadonlySet<string> = new Set();

/** The header names a Connection header lists (to be dropped with it). */
function connectionListed(headers: IncomingHttpHeaders | Record<string, unknown>): ReadonlySet<string> {
  const value = headers.connection;
  // The usual values: nothing, or keep-alive (a hop-by-hop header anyway). No parsing for them.
  if (value === undefined || value === 'keep-alive') return NOTHING_LISTED;
  const text = Array.isArray(value) ? value.join(',') : typeof value === 'string' ? value : '';
  return new Set(text.split(',').map((token) => token.trim().toLowerCase()).filter(Boolean));
}

export interface ForwardingFacts {
  requestId: string;
  peer: string;
  peerTrusted: boolean;
  /** Unset for an anonymous caller: the upstream then gets no X-Consumer-Id at all. */
  consumerId?: string;
  consumerTier: string;
  /** listen.underscores_in_headers: whether header names with `_` may be forwarded at all. */
  underscores: 'drop' | 'allow';
  /** The client's connection to us is TLS. */
  encrypted: boolean;
  /**
   * On a listener that asks for client certificates: the verified certificate's subject, or null
   * for none. Undefined elsewhere (the header is then kept only from a trusted proxy).
   */
  clientCertSubject?: string | null;
}

/** The request headers the upstream receives. */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, facts: ForwardingFacts): Record<string, string | string[]> {
  const listed = connectionListed(incoming);
  const out: Record<string, string | string[]> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name) || CLIENT_MUST_NOT_SEND.has(name)) continue;
    if (name.startsWith('x-forwarded-')) continue; // rebuilt below
    // An upstream may read `x_consumer_id` as the X-Consumer-Id we set (nginx drops them by default).
    if (name.includes('_') && (facts.underscores === 'drop' || spellsGatewayHeader(name))) continue;
    if (FORWARDING.has(name) && !facts.peerTrusted) continue;
    if (name === CLIENT_CERT_SUBJECT && (facts.clientCertSubject !== undefined || !facts.peerTrusted)) continue;
    out[name] = value;
  }
  // Only a trusted proxy's forwarding headers are kept; anyone else's could be forged.
  const priorFor = facts.peerTrusted ? incoming['x-forwarded-for'] : undefined;
  out['x-forwarded-for'] = priorFor ? `${priorFor}, ${facts.peer}` : facts.peer;
  out['x-forwarded-proto'] = (facts.peerTrusted && (incoming['x-forwarded-proto'] as string | undefined)) || (facts.encrypted ? 'https' : 'http');
  const forwardedHost = (facts.peerTrusted && (incoming['x-forwarded-host'] as string | undefined)) || incoming.host;
  if (forwardedHost) out['x-forwarded-host'] = forwardedHost;
  if (facts.clientCertSubject) out[CLIENT_CERT_SUBJECT] = facts.clientCertSubject;
  out['x-request-id'] = facts.requestId;
  if (facts.consumerId !== undefined) out['x-consumer-id'] = facts.consumerId;
  out['x-consumer-tier'] = facts.consumerTier;
  return out;
}

/** The upstream's response headers as the client receives them, with the gateway's own (`ours`) over them. */
export function clientResponseHeaders(upstream: Record<string, string | string[] | undefined>, requestId: string, ours: Record<string, string>) {
  const listed = connectionListed(upstream);
  const out: Record<string, string | string[]> = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  out['x-request-id'] = requestId;
  for (const name in ours) out[name] = ours[name];
  return out;
}
