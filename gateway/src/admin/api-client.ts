import { Agent, request } from 'undici';
import type { Config } from '../config/schema';
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
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

export class AdminApiClient implements KeyOperations {
  private readonly agent = new Agent({ connections: 1 });

  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

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
