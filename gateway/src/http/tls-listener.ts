// HTTPS for the public and admin listeners: the server options, the certificate swap on reload,
// handshakes that fail or stall, and the client certificate a request came with.
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContextOptions, type Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import { loadTlsFiles } from '../config/tls-files';
import type { ListenTls } from '../config/schema';

type ListenerTls = Pick<ListenTls, 'cert_file' | 'key_file' | 'ca_file' | 'client_auth'>;

const MIN_VERSION = 'TLSv1.2';

/** The certificate, key and client CA, read from their files now (at start, and again on reload). */
function secureContextOptions(tls: ListenerTls): SecureContextOptions {
  const { cert, key, ca } = loadTlsFiles(tls);
  return { cert, key, ca, minVersion: MIN_VERSION };
}

/**
 * A plain or HTTPS server with node's HTTP `options`. An HTTPS server is an http.Server in all the
 * gateway relies on (requests, upgrades, clientError, timeouts, closeAllConnections), so it is typed
 * as one. A handshake must finish within `handshakeTimeoutMs` (a stalled one holds a socket
 * before node's HTTP timeouts can see it); failed ones are closed and logged at debug level.
 */
export function createListener(options: http.ServerOptions, tls: ListenerTls | undefined, handshakeTimeoutMs: number, log: Logger): http.Server {
  if (!tls) return http.createServer(options);
  const server = https.createServer({
    ...options,
    ...secureContextOptions(tls),
    handshakeTimeout: handshakeTimeoutMs,
    requestCert: tls.client_auth !== undefined,
    // optional: a client without a certificate gets in; one whose certificate fails is refused below.
    rejectUnauthorized: tls.client_auth === 'require',
  });
  // A client may not renegotiate (TLS 1.2; 1.3 has no renegotiation), as nginx refuses it: each one
  // costs us a handshake, and it could swap the certificate a connection was verified with.
  // node only reports the attempt (an 'error' the HTTP server would answer mid-handshake): the
  // connection is closed, first.
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.disableRenegotiation();
    socket.prependListener('error', closeOnRenegotiation);
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    log.debug({ err: err.code ?? err.message, peer: socket.remoteAddress }, 'TLS handshake failed');
    socket.destroy();
  });
  if (tls.client_auth === 'optional') {
    server.on('secureConnection', (socket: TLSSocket) => {
      if (socket.authorized || !socket.getPeerX509Certificate()) return;
      log.info({ err: String(socket.authorizationError), peer: socket.remoteAddress }, 'client certificate refused');
      socket.destroy();
    });
  }
  return server as unknown as http.Server;
}

/** A TLS socket's 'error' listener: a refused renegotiation ends the connection. */
function closeOnRenegotiation(this: TLSSocket, err: NodeJS.ErrnoException): void {
  if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED') this.destroy();
}

/** The event a listener's connections are first seen at, with the socket requests will arrive on. */
export function connectionEvent(server: http.Server): 'connection' | 'secureConnection' {
  return server instanceof https.Server ? 'secureConnection' : 'connection';
}

/**
 * A reload, in two steps so nothing changes unless every part of it can: this reads the renewed
 * certificate, key and CA (throwing when they cannot be used); the function it returns hands them to
 * new connections (open ones keep theirs). Nothing to do on a plain listener.
 */
export function prepareRenewal(server: http.Server, tls: ListenerTls | undefined): () => void {
  if (!tls || !(server instanceof https.Server)) return () => undefined;
  const options = secureContextOptions(tls);
  return () => (server as TlsServer).setSecureContext(options);
}

/** Whether the request came over TLS. */
export function isEncrypted(socket: Socket): boolean {
  return socket instanceof TLSSocket;
}

/**
 * The subject of the client certificate this connection presented and we verified, for the upstream
 * (`X-Client-Cert-Subject`): `O=Example,CN=alice`, its non-printable bytes %-encoded. Null when none.
 */
export function verifiedClientSubject(socket: Socket): string | null {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return null;
  // Read once per connection: its certificate cannot change (clients may not renegotiate, see
  // createListener), and parsing it cost 2.2 µs on every request of a keep-alive connection.
  let subject = subjects.get(socket);
  if (subject === undefined) subjects.set(socket, (subject = peerSubject(socket)));
  return subject;
}

const subjects = new WeakMap<TLSSocket, string | null>();

function peerSubject(socket: TLSSocket): string | null {
  const subject = socket.getPeerX509Certificate()?.subject;
  if (!subject) return null;
  return subject.split('\n').join(',').replace(/[^\x20-\x7e]/g, (c) => encodeURIComponent(c));
}
