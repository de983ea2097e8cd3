import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { Agent, buildConnector, request } from 'undici';
import type { Config } from '../config/schema';
import { loadTlsFiles } from '../config/tls-files';
import type { PublicKey } from '../keys/types';
import type { KeyList, KeyUsage, KeyWithSecret, ListQuery } from './key-service';
import type { CreateKeyInput, UpdateKeyInput } from './validation';

// The CLI's way to the embedded store: its keys live inside the running gateway, so the CLI asks that
// gateway's key API (admin host, port and token from the same config file).

/** What the CLI does with keys; KeyService (Redis, directly) and AdminApiClient (embedded, over HTTP) both do it. */
export interface KeyOperations {
  create(input: CreateKeyInput): Promise<KeyWithSecret>;
  list(query: ListQuery): Promise<KeyList>;
  get(id: string): Promise<PublicKey>;
  update(id: string, patch: UpdateKeyInput): Promise<PublicKey>;
  usage(id: string): Promise<KeyUsage>;
  rotate(id: string): Promise<KeyWithSecret>;
  revoke(id: string): Promise<PublicKey>;
}

/** Where this config's admin listener answers: a wildcard bind address is reached on loopback. */
export function adminBaseUrl(config: Config): string {
  const { host, port } = config.admin;
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const scheme = config.admin.tls ? 'https' : 'http';
  return `${scheme}://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

class CertificateMismatch extends Error {}

/**
 * Connections that accept exactly the certificate in `certFile` (its first, the leaf): the admin
 * port's own, read from the same config, whatever CA signed it. The token is sent only after that.
 */
function pinnedTo(certFile: string): buildConnector.connector {
  const expected = new X509Certificate(loadTlsFiles({ cert_file: certFile }).cert!).fingerprint256;
  const connect = buildConnector({ rejectUnauthorized: false });
  return (options, callback) =>
    connect(options, (err, socket) => {
      if (err) return callback(err, null);
      if ((socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 === expected) return callback(null, socket);
      socket.destroy();
      callback(new CertificateMismatch(`the admin port at ${options.hostname}:${options.port} presented a certificate other than admin.tls.cert_file`), null);
    });
}

export class AdminApiClient implements KeyOperations {
  private readonly agent: Agent;

  /** `certFile`: admin.tls.cert_file, when the admin port speaks HTTPS. */
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    certFile?: string,
  ) {
    this.agent = new Agent({ connections: 1, ...(certFile && { connect: pinnedTo(certFile) }) });
  }

  private async call<T>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let res;
    try {
      res = await request(`${this.baseUrl}${path}`, {
        method,
        dispatcher: this.agent,
        headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err instanceof CertificateMismatch) throw err;
      throw new Error(
        `no gateway is running with this config: nothing answers at ${this.baseUrl} (admin.host, admin.port), ` +
          `and the embedded key store lives inside the gateway process. Start it with "sluice serve --config FILE" ` +
          `(or configure store.redis). (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
    const json = (await res.body.json().catch(() => undefined)) as { error?: { message?: string } } | undefined;
    if (res.statusCode >= 400) throw new Error(json?.error?.message ?? `the gateway answered ${res.statusCode}`);
    return json as T;
  }

  create(input: CreateKeyInput): Promise<KeyWithSecret> {
    return this.call('POST', '/v1/keys', input);
  }

  list({ cursor, limit }: ListQuery): Promise<KeyList> {
    const query = new URLSearchParams({ limit: String(limit), ...(cursor === undefined ? {} : { cursor }) });
    return this.call('GET', `/v1/keys?${query}`);
  }

  get(id: string): Promise<PublicKey> {
    return this.call('GET', `/v1/keys/${encodeURIComponent(id)}`);
  }

  update(id: string, patch: UpdateKeyInput): Promise<PublicKey> {
    return this.call('PATCH', `/v1/keys/${encodeURIComponent(id)}`, patch);
  }

  usage(id: string): Promise<KeyUsage> {
    return this.call('GET', `/v1/keys/${encodeURIComponent(id)}/usage`);
  }

  rotate(id: string): Promise<KeyWithSecret> {
    return this.call('POST', `/v1/keys/${encodeURIComponent(id)}/rotate`);
  }

  revoke(id: string): Promise<PublicKey> {
    return this.call('DELETE', `/v1/keys/${encodeURIComponent(id)}`);
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}
