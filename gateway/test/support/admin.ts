import { send, type SimpleResponse } from './http';

// Calls to a gateway's key API (admin listener, bearer token), as an operator would make them.

export const ADMIN_TOKEN = 'test-admin-token-do-not-echo-7f3a9c';

export type AdminCall = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<SimpleResponse>;

/**
 * `body` is sent as JSON (a string is sent as is); `headers` override the defaults (pass
 * `authorization: ''` to send none). Every answer is also kept in `seen`, for checks over all of them.
 */
export function adminApi(adminUrl: string, token = ADMIN_TOKEN, seen: SimpleResponse[] = []): AdminCall {
  return async (method, path, body, headers = {}) => {
    const all: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) all['content-type'] = 'application/json';
    Object.assign(all, headers);
    for (const [name, value] of Object.entries(all)) if (value === '') delete all[name];
    const res = await send(`${adminUrl}${path}`, {
      method,
      headers: all,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    seen.push(res);
    return res;
  };
}

/** Creates a key through the API and returns the 201 body (id, key, ...). */
export async function createKey(admin: AdminCall, body: Record<string, unknown>): Promise<{ id: string; key: string; [field: string]: unknown }> {
  const res = await admin('POST', '/v1/keys', body);
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${res.text}`);
  return res.json;
}
