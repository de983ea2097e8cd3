import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls, { type TLSSocket } from 'node:tls';
import { Agent } from 'undici';
import WebSocket, { WebSocketServer } from 'ws';
import { stringify } from 'yaml';
import { createCa, makeCertDir, selfSigned as selfSignedCert, removeCertDir, serialOf, type IssuedCert, type TestCa } from '../support/certs';
import { baseConfig, REPO_ROOT, runCli, startGateway, type TestGateway } from '../support/gateway';
import { expectEnvelope, send, type SimpleResponse } from '../support/http';
import { startUpstream, type TestUpstream } from '../support/upstream';
import { waitFor } from '../support/wait';
import { freePort } from '../support/ports';

// TLS both ways, with certificates made by the real openssl for this run: HTTPS upstreams with a CA
// of their own (and client certificates), an HTTPS public listener (client certificates required or
// optional), an HTTPS admin port, and renewed certificates picked up on reload.

const KEY = 'sk_test_tls_suite_key_000000';
const ADMIN_TOKEN = 'tls-suite-admin-token-0123456789abcdef';

let dir: string;
let upstreamCa: TestCa; // signs the HTTPS upstreams' certificates
let otherCa: TestCa; // a CA nobody is told to trust
let gatewayCa: TestCa; // signs the gateway's own listener certificates
let clientCa: TestCa; // signs client certificates
let upstreamCert: IssuedCert;

beforeAll(() => {
  dir = makeCertDir();
  upstreamCa = createCa(dir, 'upstream CA');
  otherCa = createCa(dir, 'other CA');
  gatewayCa = createCa(dir, 'gateway CA');
  clientCa = createCa(dir, 'client CA');
  upstreamCert = upstreamCa.issue('upstream');
});

afterAll(() => removeCertDir(dir));

// ---------------------------------------------------------------------------------------------
// A real HTTPS upstream: answers 200 with what it saw (headers, the client certificate's subject).

interface HttpsUpstream {
  url: string;
  port: number;
  seen: Array<{ headers: Record<string, unknown>; clientSubject?: string }>;
  close(): Promise<void>;
}

async function startHttpsUpstream(options: https.ServerOptions): Promise<HttpsUpstream> {
  const seen: HttpsUpstream['seen'] = [];
  const server = https.createServer(options, (req, res) => {
    const subject = (req.socket as TLSSocket).getPeerX509Certificate()?.subject;
    seen.push({ headers: req.headers, clientSubject: subject });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true }));
  });
  server.on('tlsClientError', () => undefined);
  // WebSocket: echoes what it gets.
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data) => ws.send(`echo: ${String(data)}`)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    seen,
    close: () =>
      new Promise((resolve) => {
        for (const client of wss.clients) client.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const tlsFiles = (cert: IssuedCert) => ({ cert: readPem(cert.cert), key: readPem(cert.key) });

const readPem = (file: string): Buffer => readFileSync(file);

/** The gateway's config file, in the suite's certificate directory. */
function writeGatewayConfig(name: string, config: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(config));
  return file;
}

/** The log line of the upstream failure behind the answer with this request id (the log is written asynchronously). */
async function attemptFailureLine(gateway: TestGateway, requestId: string): Promise<Record<string, unknown> | undefined> {
  const find = () => gateway.output.find((line) => line.includes('"upstream attempt failed"') && line.includes(requestId));
  await waitFor(() => find() !== undefined, 3000, { what: `the log line of ${requestId}` }).catch(() => undefined);
  const line = find();
  return line === undefined ? undefined : (JSON.parse(line) as Record<string, unknown>);
}

function expectNoKeyMaterial(gateway: TestGateway): void {
  const output = gateway.output.join('\n');
  expect(output).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
}

// ---------------------------------------------------------------------------------------------

describe('HTTPS upstreams', () => {
  let good: HttpsUpstream; // certificate by upstreamCa for 127.0.0.1/localhost
  let strange: HttpsUpstream; // certificate by otherCa
  let expired: HttpsUpstream; // certificate by upstreamCa, expired
  let selfSigned: HttpsUpstream; // a self-signed certificate
  let selfSignedFiles: IssuedCert;
  let mtls: HttpsUpstream; // requires a client certificate by clientCa
  let plain: TestUpstream; // speaks plain HTTP
  let gateway: TestGateway;
  let gatewayClient: IssuedCert;
  let swappableCa: string; // an upstream CA file the reload test rewrites

  beforeAll(async () => {
    good = await startHttpsUpstream(tlsFiles(upstreamCert));
    strange = await startHttpsUpstream(tlsFiles(otherCa.issue('strange')));
    expired = await startHttpsUpstream(tlsFiles(upstreamCa.issue('expired', { days: 0 })));
    selfSignedFiles = selfSignedCert(dir, 'upstream');
    selfSigned = await startHttpsUpstream(tlsFiles(selfSignedFiles));
    mtls = await startHttpsUpstream({ ...tlsFiles(upstreamCa.issue('mtls')), ca: readPem(clientCa.cert), requestCert: true, rejectUnauthorized: true });
    plain = await startUpstream();
    gatewayClient = clientCa.issue('sluice-gateway', { usage: 'client' });
    swappableCa = path.join(dir, 'swappable-ca.crt');
    copyFileSync(upstreamCa.cert, swappableCa);

    const withCa = { ca_file: upstreamCa.cert };
    const upstreams: Record<string, Record<string, unknown>> = {
      no_ca: { targets: [good.url] },
      trusted: { targets: [good.url], tls: withCa },
      wrong_name: { targets: [good.url], tls: { ...withCa, servername: 'wrong.example' } },
      right_name: { targets: [good.url], tls: { ...withCa, servername: 'localhost' } },
      unknown_ca: { targets: [strange.url], tls: withCa },
      expired: { targets: [expired.url], tls: withCa },
      self_signed: { targets: [selfSigned.url] },
      self_signed_trusted: { targets: [selfSigned.url], tls: { ca_file: selfSignedFiles.cert } },
      not_tls: { targets: [plain.url.replace('http:', 'https:')], tls: withCa },
      mtls_without_cert: { targets: [mtls.url], tls: withCa },
      mtls: { targets: [mtls.url], tls: { ...withCa, cert_file: gatewayClient.cert, key_file: gatewayClient.key } },
      insecure: { targets: [good.url], tls: { reject_unauthorized: false } },
      // The first target's certificate is by a CA not trusted here: retried on the second.
      retried: { targets: [strange.url, good.url], tls: withCa },
      breaker: { targets: [good.url], breaker: { failures: 3, cooldown: '60s' } },
      swappable: { targets: [good.url], tls: { ca_file: swappableCa } },
    };
    const configFile = writeGatewayConfig(
      'upstreams',
      baseConfig({
        tiers: { t: { limits: [], scopes: ['*'] } },
        upstreams,
        routes: Object.keys(upstreams).map((name) => ({
          name,
          match: { path_prefix: `/${name}` },
          upstream: name,
          strip_prefix: true,
          retries: name === 'retried' ? 1 : 0,
        })),
        keys: [{ name: 'k', tier: 't', key: KEY }],
      }),
    );
    gateway = await startGateway(configFile);
  });

  afterAll(async () => {
    await gateway?.stop();
    await Promise.all([good, strange, expired, selfSigned, mtls].map((u) => u?.close()));
    await plain?.close();
  });

  const get = (route: string) => send(`${gateway.url}/${route}/ok`, { headers: { 'x-api-key': KEY } });

  /** A 502 bad_gateway whose log line names the TLS reason (matching `reason`), and no key material. */
  async function expectTlsFailure(route: string, reason: RegExp): Promise<void> {
    const res = await get(route);
    const error = expectEnvelope(res, 502, 'bad_gateway');
    const requestId = res.headers['x-request-id'] as string;
    expect(error.request_id ?? requestId).toBeTruthy();
    const line = await attemptFailureLine(gateway, requestId);
    expect(line).toBeDefined();
    expect(`${String(line!.err_code)} ${String(line!.err)}`).toMatch(reason);
    expectNoKeyMaterial(gateway);
  }

  it('answers 502 for an upstream whose CA is not trusted, and 200 once tls.ca_file names it', async () => {
    await expectTlsFailure('no_ca', /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify/);
    const res = await get('trusted');
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ ok: true });
  });

  it('tunnels a WebSocket upgrade to an https:// upstream with the same TLS settings', async () => {
    const ws = new WebSocket(`${gateway.url.replace('http:', 'ws:')}/trusted/ws`, { headers: { 'x-api-key': KEY } });
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('over wss'));
      ws.once('message', (data) => resolve(String(data)));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`answered ${res.statusCode}`)));
    });
    ws.close();
    expect(echoed).toBe('echo: over wss');
    const refused = new WebSocket(`${gateway.url.replace('http:', 'ws:')}/no_ca/ws`, { headers: { 'x-api-key': KEY } });
    const status = await new Promise<number>((resolve) => {
      refused.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      refused.once('error', () => resolve(-1));
    });
    expect(status).toBe(502);
  });

  it('answers 502 when the certificate is not for tls.servername, 200 when it is', async () => {
    await expectTlsFailure('wrong_name', /ERR_TLS_CERT_ALTNAME_INVALID|wrong\.example/);
    expect((await get('right_name')).status).toBe(200);
  });

  it('answers 502 for each other kind of TLS failure: self-signed, unknown CA, expired certificate, a target that does not speak TLS', async () => {
    await expectTlsFailure('self_signed', /DEPTH_ZERO_SELF_SIGNED_CERT|self-signed/);
    expect((await get('self_signed_trusted')).status).toBe(200); // its own certificate as ca_file
    await expectTlsFailure('unknown_ca', /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify/);
    await expectTlsFailure('expired', /CERT_HAS_EXPIRED|expired/);
    await expectTlsFailure('not_tls', /ERR_SSL_|EPROTO|wrong version/i);
  });

  it('sends the client certificate to an upstream that requires one (mTLS): 502 without cert_file/key_file, 200 with', async () => {
    const before = mtls.seen.length;
    const refused = await get('mtls_without_cert');
    expectEnvelope(refused, 502, 'bad_gateway');
    expect(await attemptFailureLine(gateway, refused.headers['x-request-id'] as string)).toBeDefined();
    expect(mtls.seen.length).toBe(before); // never served without the certificate

    const res = await get('mtls');
    expect(res.status).toBe(200);
    expect(mtls.seen.at(-1)!.clientSubject).toContain('CN=sluice-gateway');
    expectNoKeyMaterial(gateway);
  });

  it('with reject_unauthorized: false accepts any certificate, and warned about it at start', async () => {
    expect((await get('insecure')).status).toBe(200);
    const warning = gateway.output.find((line) => line.includes('reject_unauthorized: false'));
    expect(warning).toBeDefined();
    expect(JSON.parse(warning!).upstream).toBe('insecure');
  });

  it('retries a TLS failure on another target like any connect failure', async () => {
    const res = await get('retried'); // round robin starts at the first target: the untrusted one
    expect(res.status).toBe(200);
    const line = await attemptFailureLine(gateway, res.headers['x-request-id'] as string);
    expect(line?.target).toBe(strange.url);
  });

  it('counts TLS failures against the target: after breaker.failures of them the answer is 503', async () => {
    for (let i = 0; i < 3; i++) expectEnvelope(await get('breaker'), 502, 'bad_gateway');
    const ejected = expectEnvelope(await get('breaker'), 503, 'service_unavailable');
    expect(ejected).toBeDefined();
  });

  it('re-reads an upstream CA file on reload, and refuses a reload whose files do not parse', async () => {
    expect((await get('swappable')).status).toBe(200);
    const configFile = path.join(dir, 'upstreams.yaml');
    const reloads = () => gateway.output.filter((line) => line.includes('"config reloaded"')).length;
    const refusals = () => gateway.output.filter((line) => line.includes('config reload refused')).length;

    // A CA file that is not PEM: the reload is refused, the running pools stay.
    writeFileSync(swappableCa, 'not a certificate\n');
    const refusedBefore = refusals();
    gateway.process.kill('SIGHUP');
    await waitFor(() => refusals() > refusedBefore, 5000, { what: 'reload refused' });
    expect(gateway.output.at(-1)).toContain('swappable-ca.crt');
    expect((await get('swappable')).status).toBe(200);

    // Now the file names another CA: the pool is rebuilt with it, and the upstream is no longer trusted.
    copyFileSync(otherCa.cert, swappableCa);
    const before = reloads();
    gateway.process.kill('SIGHUP');
    await waitFor(() => reloads() > before, 5000, { what: 'reload' });
    expectEnvelope(await get('swappable'), 502, 'bad_gateway');
    expect((await get('trusted')).status).toBe(200); // unchanged upstreams keep working
    expect(configFile).toBeTruthy();
  });
});

// ---------------------------------------------------------------------------------------------

describe('HTTPS listener and admin port', () => {
  let upstream: TestUpstream;
  let gateway: TestGateway;
  let configFile: string;
  let listenerCert: IssuedCert; // the files the config names; a renewal overwrites them
  let adminCert: IssuedCert; // likewise for the admin port
  let agent: Agent;
  let config: Record<string, unknown>;

  beforeAll(async () => {
    upstream = await startUpstream();
    const issued = gatewayCa.issue('gateway');
    listenerCert = { cert: path.join(dir, 'listener.crt'), key: path.join(dir, 'listener.key') };
    copyFileSync(issued.cert, listenerCert.cert);
    copyFileSync(issued.key, listenerCert.key);
    const issuedAdmin = gatewayCa.issue('admin');
    adminCert = { cert: path.join(dir, 'admin.crt'), key: path.join(dir, 'admin.key') };
    copyFileSync(issuedAdmin.cert, adminCert.cert);
    copyFileSync(issuedAdmin.key, adminCert.key);
    config = baseConfig({
      listen: { host: '127.0.0.1', port: 0, headers_timeout: '1s', send_timeout: '1s', tls: { cert_file: listenerCert.cert, key_file: listenerCert.key } },
      admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN, tls: { cert_file: adminCert.cert, key_file: adminCert.key } },
      tiers: { t: { limits: [], scopes: ['*'] } },
      upstreams: { app: { targets: [upstream.url] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      keys: [{ name: 'k', tier: 't', key: KEY }],
    });
    configFile = writeGatewayConfig('listener', config);
    gateway = await startGateway(configFile);
    agent = new Agent({ connect: { ca: readPem(gatewayCa.cert) } });
  });

  afterAll(async () => {
    await gateway?.stop();
    await upstream?.close();
    await agent?.close();
  });

  const httpsUrl = (p: string) => `https://127.0.0.1:${gateway.port}${p}`;

  it('is answered over HTTPS by curl --cacert, and the upstream is told X-Forwarded-Proto: https', async () => {
    upstream.reset();
    const { stdout } = await curl(['--cacert', gatewayCa.cert, '-H', `x-api-key: ${KEY}`, '-w', '\n%{http_code} %{ssl_verify_result}', httpsUrl('/ok')]);
    const [body, status] = stdout.split('\n');
    expect(status).toBe('200 0');
    expect(JSON.parse(body)).toEqual({ ok: true });
    expect(upstream.requests.at(-1)!.headers['x-forwarded-proto']).toBe('https');
  });

  it('is answered by node over HTTPS, TLS 1.2 and above only', async () => {
    const res = await send(httpsUrl('/ok'), { headers: { 'x-api-key': KEY }, dispatcher: agent });
    expect(res.status).toBe(200);
    // Errors keep their envelope over TLS too.
    expectEnvelope(await send(httpsUrl('/ok'), { dispatcher: agent }), 401, 'missing_api_key');
    const old = await handshake({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
    expect(old.error).toBeDefined();
    const modern = await handshake({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    expect(modern.error).toBeUndefined();
    expect(modern.protocol).toBe('TLSv1.2');
  });

  it('keeps framing checks, keep-alive and WebSocket upgrades over TLS', async () => {
    // A request without Host: the gateway's own 400 envelope, over TLS.
    const raw = await tlsExchange(gateway.port, 'GET /ok HTTP/1.1\r\nx-api-key: ' + KEY + '\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(raw).toContain('"invalid_request"');

    const ws = new WebSocket(`wss://127.0.0.1:${gateway.port}/ws`, { headers: { 'x-api-key': KEY }, ca: readPem(gatewayCa.cert) });
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('hello over tls'));
      ws.on('message', (data) => {
        if (String(data).includes('hello over tls')) resolve(String(data)); // after the upstream's greeting
      });
      ws.once('error', reject);
    });
    ws.close();
    expect(echoed).toContain('hello over tls');

    // A body declared too large, still arriving while refused: the 413 is read (lingering close).
    const tooLarge = await tlsRefusedUpload(gateway.port, 20 * 1024 * 1024);
    expect(tooLarge).toMatch(/^HTTP\/1\.1 413 /);
  });

  it('survives handshakes that fail or stall: they are closed, and the listener keeps serving', async () => {
    // Plain HTTP on the TLS port, garbage, and a client that connects and says nothing.
    await rawClose(gateway.port, 'GET /ok HTTP/1.1\r\nHost: x\r\n\r\n');
    await rawClose(gateway.port, Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3]));
    const started = Date.now();
    await rawClose(gateway.port, ''); // the handshake times out with headers_timeout (1 s)
    expect(Date.now() - started).toBeLessThan(5000);
    expect(gateway.process.exitCode).toBeNull();
    expect((await send(httpsUrl('/ok'), { headers: { 'x-api-key': KEY }, dispatcher: agent })).status).toBe(200);

    // Many at once leave no socket behind: the process's open files come back to what they were.
    const openFiles = () => readdirSync(`/proc/${gateway.pid}/fd`).length;
    const before = openFiles();
    await Promise.all(
      Array.from({ length: 30 }, (_, i) => rawClose(gateway.port, i % 3 === 0 ? '' : i % 3 === 1 ? 'GET / HTTP/1.1\r\n\r\n' : Buffer.from([0x16, 0x03, 0x01, 0, 5, 1, 0, 0, 1, 0]))),
    );
    await waitFor(() => openFiles() <= before + 1, 5000, { what: `open files back to ${before}` });
  });

  it('keeps the slow-client guards over TLS: slow headers get 408, a steady slow reader is served, a stopped reader is cut', async () => {
    // Headers that never end: 408 after headers_timeout (1 s), as on a plain listener.
    const started = Date.now();
    const slowHeaders = await tlsExchange(gateway.port, `GET /ok HTTP/1.1\r\nHost: x\r\nx-api-key: ${KEY}\r\n`);
    expect(slowHeaders).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(4000);

    // A reader slower than the network but never stalled for send_timeout (1 s) gets every byte.
    const bytes = 4_000_000;
    const steady = await tlsDownload(gateway.port, `/huge?bytes=${bytes}`, { pauseMs: 8 });
    expect(steady.bodyBytes).toBe(bytes);
    expect(steady.ms).toBeGreaterThan(1000); // slow enough for send_timeout to have had its chance

    // A reader that stops: cut within send_timeout, and the upstream's answer with it.
    const stopped = tls.connect({ host: '127.0.0.1', port: gateway.port, ca: readPem(gatewayCa.cert), servername: 'localhost' }, () =>
      stopped.write(`GET /huge?bytes=64000000 HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${KEY}\r\n\r\n`),
    );
    stopped.once('data', () => stopped.pause()); // reads one chunk, then nothing
    stopped.on('error', () => undefined);
    try {
      await waitFor(() => upstream.activeResponses() === 1, 3000, { what: 'the upstream answering' });
      await waitFor(() => upstream.activeResponses() === 0, 5000, { what: 'the stopped reader cut' });
    } finally {
      stopped.destroy();
    }
  });

  it('serves the admin port over HTTPS: /healthz, /metrics, and /v1/keys with the token', async () => {
    const adminUrl = (p: string) => `https://127.0.0.1:${gateway.adminPort}${p}`;
    const health = await send(adminUrl('/healthz'), { dispatcher: agent });
    expect(health.status).toBe(200);
    const metrics = await send(adminUrl('/metrics'), { dispatcher: agent });
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('sluice_requests_total');
    const keys = await send(adminUrl('/v1/keys'), { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, dispatcher: agent });
    expect(keys.status).toBe(200);
    expectEnvelope(await send(adminUrl('/v1/keys'), { dispatcher: agent }), 401, 'invalid_admin_token');
    // Plain HTTP to it is not served.
    await expect(send(`http://127.0.0.1:${gateway.adminPort}/healthz`)).rejects.toThrow();
  });

  it('serves a renewed certificate after a reload; a reload with a key that does not match is refused', async () => {
    const before = await handshake({});
    expect(before.serial).toBe(serialOf(listenerCert.cert));

    // A key that does not belong to the certificate: refused, the old certificate stays.
    const stray = gatewayCa.issue('stray');
    const renewed = gatewayCa.issue('gateway');
    copyFileSync(renewed.cert, listenerCert.cert);
    copyFileSync(stray.key, listenerCert.key);
    const refusals = () => gateway.output.filter((line) => line.includes('config reload refused')).length;
    const refused = refusals();
    gateway.process.kill('SIGHUP');
    await waitFor(() => refusals() > refused, 5000, { what: 'reload refused' });
    expect((await handshake({})).serial).toBe(before.serial);

    copyFileSync(renewed.key, listenerCert.key);
    const reloads = () => gateway.output.filter((line) => line.includes('"config reloaded"')).length;
    const reloaded = reloads();
    gateway.process.kill('SIGHUP');
    await waitFor(() => reloads() > reloaded, 5000, { what: 'reload' });
    const after = await handshake({});
    expect(after.serial).toBe(serialOf(renewed.cert));
    expect(after.serial).not.toBe(before.serial);
    expect((await send(httpsUrl('/ok'), { headers: { 'x-api-key': KEY }, dispatcher: agent })).status).toBe(200);
    expectNoKeyMaterial(gateway);
  });

  it('picks up renewed certificates (listener and admin port) without a SIGHUP: the files are watched', async () => {
    const before = await handshake({});
    const adminBefore = await handshake({ port: gateway.adminPort });
    expect(adminBefore.serial).toBe(serialOf(adminCert.cert));
    const renewed = gatewayCa.issue('gateway');
    const renewedAdmin = gatewayCa.issue('admin');
    copyFileSync(renewed.cert, listenerCert.cert);
    copyFileSync(renewed.key, listenerCert.key);
    copyFileSync(renewedAdmin.cert, adminCert.cert);
    copyFileSync(renewedAdmin.key, adminCert.key);
    await waitFor(async () => (await handshake({})).serial === serialOf(renewed.cert), 6000, { what: 'the renewed certificate served' });
    await waitFor(async () => (await handshake({ port: gateway.adminPort })).serial === serialOf(renewedAdmin.cert), 6000, { what: 'the renewed admin certificate served' });
    expect(before.serial).not.toBe(serialOf(renewed.cert));
    expect(adminBefore.serial).not.toBe(serialOf(renewedAdmin.cert));
    const health = await send(`https://127.0.0.1:${gateway.adminPort}/healthz`, { dispatcher: agent });
    expect(health.status).toBe(200);
  });

  it('says that turning TLS off takes a restart (the listener stays HTTPS)', async () => {
    const reloads = () => gateway.output.filter((line) => line.includes('"config reloaded"')).length;
    const reloaded = reloads();
    writeFileSync(configFile, stringify({ ...config, listen: { host: '127.0.0.1', port: 0, headers_timeout: '1s', send_timeout: '1s' } }));
    gateway.process.kill('SIGHUP');
    await waitFor(() => reloads() > reloaded, 5000, { what: 'reload' });
    const warning = gateway.output.find((line) => line.includes('take effect only after a restart'));
    expect(JSON.parse(warning!).sections).toContain('listen');
    expect((await handshake({})).error).toBeUndefined();
  });

  it('drains over TLS: a request in flight at SIGTERM is answered, then the process exits 0', async () => {
    const inFlight = send(httpsUrl('/slow?ms=1500'), { headers: { 'x-api-key': KEY }, dispatcher: agent });
    await waitFor(() => upstream.activeResponses() === 1, 3000, { what: 'the request in flight' });
    const exitCode = gateway.stop('SIGTERM');
    expect((await inFlight).status).toBe(200);
    expect(await exitCode).toBe(0);
  });

  function handshake(options: tls.ConnectionOptions): Promise<{ error?: Error; serial?: string; protocol?: string | null }> {
    return new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: gateway.port, ca: readPem(gatewayCa.cert), servername: 'localhost', ...options }, () => {
        const result = { serial: socket.getPeerX509Certificate()?.serialNumber, protocol: socket.getProtocol() };
        socket.destroy();
        resolve(result);
      });
      socket.once('error', (error) => resolve({ error }));
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('the CLI and an HTTPS admin port (embedded key store)', () => {
  it('creates a key through it, trusting exactly admin.tls.cert_file; another certificate is refused before the token is sent', async () => {
    const upstream = await startUpstream();
    const adminCert = gatewayCa.issue('cli-admin');
    const adminPort = await freePort();
    const config = (cert: IssuedCert) =>
      baseConfig({
        admin: { host: '127.0.0.1', port: adminPort, token: ADMIN_TOKEN, tls: { cert_file: cert.cert, key_file: cert.key } },
        tiers: { t: { limits: [], scopes: ['*'] } },
        upstreams: { app: { targets: [upstream.url] } },
        routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      });
    const configFile = writeGatewayConfig('cli-admin', config(adminCert));
    const gateway = await startGateway(configFile);
    try {
      const created = await runCli(['keys', 'create', '--config', configFile, '--tier', 't', '--name', 'over-tls', '--json']);
      expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: '' });
      const key = JSON.parse(created.stdout).key as string;
      expect((await send(`${gateway.url}/ok`, { headers: { 'x-api-key': key } })).status).toBe(200);

      // The same port, but the config names another certificate (same CA): refused, nothing created.
      const elsewhere = writeGatewayConfig('cli-admin-other', config(gatewayCa.issue('cli-admin')));
      const refused = await runCli(['keys', 'create', '--config', elsewhere, '--tier', 't', '--name', 'refused']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('presented a certificate other than admin.tls.cert_file');
      const listed = await runCli(['keys', 'list', '--config', configFile, '--json']);
      expect(listed.stdout).not.toContain('refused');
    } finally {
      await gateway.stop();
      await upstream.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('client certificates on the listener', () => {
  let upstream: TestUpstream;
  let alice: IssuedCert; // by clientCa: accepted
  let mallory: IssuedCert; // by otherCa: refused

  beforeAll(async () => {
    upstream = await startUpstream();
    alice = clientCa.issue('alice', { usage: 'client' });
    mallory = otherCa.issue('mallory', { usage: 'client' });
  });

  afterAll(async () => upstream?.close());

  async function startWithClientAuth(clientAuth: 'require' | 'optional'): Promise<TestGateway> {
    const cert = gatewayCa.issue(`gateway-${clientAuth}`);
    const configFile = writeGatewayConfig(
      `client-auth-${clientAuth}`,
      baseConfig({
        listen: { host: '127.0.0.1', port: 0, tls: { cert_file: cert.cert, key_file: cert.key, ca_file: clientCa.cert, client_auth: clientAuth } },
        tiers: { t: { limits: [], scopes: ['*'] } },
        upstreams: { app: { targets: [upstream.url] } },
        routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
        keys: [{ name: 'k', tier: 't', key: KEY }],
      }),
    );
    return startGateway(configFile);
  }

  /** One request with (or without) a client certificate; the forged subject header must never pass. */
  function request(gateway: TestGateway, client?: IssuedCert): Promise<SimpleResponse> {
    const agent = new Agent({
      connect: { ca: readPem(gatewayCa.cert), ...(client && { cert: readPem(client.cert), key: readPem(client.key) }) },
    });
    return send(`https://127.0.0.1:${gateway.port}/ok`, {
      headers: { 'x-api-key': KEY, 'x-client-cert-subject': 'CN=forged' },
      dispatcher: agent,
    }).finally(() => void agent.close());
  }

  it('require: refuses a client without a certificate or with one of another CA; accepts one by ca_file (curl too)', async () => {
    const gateway = await startWithClientAuth('require');
    try {
      await expect(request(gateway)).rejects.toThrow();
      await expect(request(gateway, mallory)).rejects.toThrow();
      upstream.reset();
      const res = await request(gateway, alice);
      expect(res.status).toBe(200);
      expect(upstream.requests.at(-1)!.headers['x-client-cert-subject']).toBe('O=sluice tests,CN=alice');

      const withCurl = await curl(['--cacert', gatewayCa.cert, '--cert', alice.cert, '--key', alice.key, '-H', `x-api-key: ${KEY}`, '-w', '\n%{http_code}', `https://127.0.0.1:${gateway.port}/ok`]);
      expect(withCurl.stdout.split('\n').at(-1)).toBe('200');
      const withoutCert = await curl(['--cacert', gatewayCa.cert, '-H', `x-api-key: ${KEY}`, '-w', '\n%{http_code}', `https://127.0.0.1:${gateway.port}/ok`]);
      expect(withoutCert.code).not.toBe(0);
      expect(gateway.process.exitCode).toBeNull();
      expectNoKeyMaterial(gateway);
    } finally {
      await gateway.stop();
    }
  });

  it('each request of a kept-alive connection carries its own connection\'s subject, with two clients interleaved', async () => {
    const bob = clientCa.issue('bob', { usage: 'client' });
    const gateway = await startWithClientAuth('require');
    // One connection per client (maxSockets 1, kept alive): `reusedSocket` proves the later requests reuse it.
    const agentOf = (client: IssuedCert) =>
      new https.Agent({ keepAlive: true, maxSockets: 1, ca: readPem(gatewayCa.cert), cert: readPem(client.cert), key: readPem(client.key) });
    const agents = { alice: agentOf(alice), bob: agentOf(bob) };
    const get = (who: 'alice' | 'bob') =>
      new Promise<{ status: number; reused: boolean; subject: unknown }>((resolve, reject) => {
        const req = https.get(`https://127.0.0.1:${gateway.port}/ok`, { agent: agents[who], headers: { 'x-api-key': KEY, 'x-client-cert-subject': 'CN=forged' } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, reused: req.reusedSocket, subject: upstream.requests.at(-1)?.headers['x-client-cert-subject'] }));
        });
        req.on('error', reject);
      });
    try {
      upstream.reset();
      const seen = [];
      for (const who of ['alice', 'bob', 'alice', 'bob', 'alice'] as const) seen.push({ who, ...(await get(who)) });
      expect(seen.map((s) => s.status)).toEqual([200, 200, 200, 200, 200]);
      expect(seen.map((s) => s.reused)).toEqual([false, false, true, true, true]);
      for (const s of seen) expect(s.subject).toBe(`O=sluice tests,CN=${s.who}`);
    } finally {
      agents.alice.destroy();
      agents.bob.destroy();
      await gateway.stop();
    }
  });

  it('refuses a client-initiated renegotiation (TLS 1.2): that connection ends, the gateway serves on', async () => {
    const gateway = await startWithClientAuth('require');
    try {
      const socket = tls.connect({ host: '127.0.0.1', port: gateway.port, ca: readPem(gatewayCa.cert), ...tlsFiles(alice), maxVersion: 'TLSv1.2' });
      socket.on('error', () => undefined);
      await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
      expect(socket.getProtocol()).toBe('TLSv1.2');
      const outcome = await new Promise<string>((resolve) => {
        setTimeout(() => resolve('no answer in 5 s'), 5000);
        socket.once('close', () => resolve('closed'));
        const started = socket.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err ? 'refused' : 'renegotiated'));
        if (!started) resolve('not started');
      });
      expect(outcome).toBe('closed');
      socket.destroy();
      expect((await request(gateway, alice)).status).toBe(200);
      expect(gateway.process.exitCode).toBeNull();
    } finally {
      await gateway.stop();
    }
  });

  it('optional: a client without a certificate gets in (with no subject); one of another CA is refused', async () => {
    const gateway = await startWithClientAuth('optional');
    try {
      upstream.reset();
      const anonymous = await request(gateway);
      expect(anonymous.status).toBe(200);
      expect(upstream.requests.at(-1)!.headers['x-client-cert-subject']).toBeUndefined(); // the forged one is dropped
      const res = await request(gateway, alice);
      expect(res.status).toBe(200);
      expect(upstream.requests.at(-1)!.headers['x-client-cert-subject']).toBe('O=sluice tests,CN=alice');
      await expect(request(gateway, mallory)).rejects.toThrow();
      await waitFor(() => gateway.output.some((line) => line.includes('client certificate refused')), 3000, { what: 'the refusal logged' });
    } finally {
      await gateway.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('config check of tls settings', () => {
  const minimal = (overrides: Record<string, unknown>) =>
    baseConfig({
      tiers: { t: { limits: [], scopes: ['*'] } },
      upstreams: { app: { targets: ['https://127.0.0.1:9443'] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      ...overrides,
    });

  async function check(name: string, config: Record<string, unknown>): Promise<{ code: number | null; output: string }> {
    const { code, stdout, stderr } = await runCli(['config', 'check', writeGatewayConfig(name, config)]);
    return { code, output: stdout + stderr };
  }

  it('accepts files that exist and parse', async () => {
    const cert = gatewayCa.issue('checked');
    const result = await check(
      'check-ok',
      minimal({
        listen: { tls: { cert_file: cert.cert, key_file: cert.key, ca_file: clientCa.cert, client_auth: 'optional' } },
        admin: { tls: { cert_file: cert.cert, key_file: cert.key } },
        upstreams: { app: { targets: ['https://127.0.0.1:9443'], tls: { ca_file: upstreamCa.cert, servername: 'api.internal' } } },
      }),
    );
    expect(result).toEqual({ code: 0, output: expect.stringContaining('OK') });
  });

  it("passes the example config's commented TLS settings once uncommented, with the files they name", async () => {
    const tlsDir = path.join(dir, 'example-tls');
    mkdirSync(tlsDir);
    const gatewayCert = gatewayCa.issue('example');
    const clientCert = clientCa.issue('example-client', { usage: 'client' });
    copyFileSync(gatewayCert.cert, path.join(tlsDir, 'gateway.crt'));
    copyFileSync(gatewayCert.key, path.join(tlsDir, 'gateway.key'));
    copyFileSync(clientCa.cert, path.join(tlsDir, 'clients-ca.crt'));
    copyFileSync(upstreamCa.cert, path.join(tlsDir, 'upstream-ca.crt'));
    copyFileSync(clientCert.cert, path.join(tlsDir, 'client.crt'));
    copyFileSync(clientCert.key, path.join(tlsDir, 'client.key'));
    const example = readFileSync(path.join(REPO_ROOT, 'config/gateway.example.yaml'), 'utf8');
    for (const levels of [1, 2]) {
      const file = path.join(dir, `example-${levels}.yaml`);
      writeFileSync(file, uncommentTlsBlocks(example, levels));
      const checked = await runCli(['config', 'check', file], { ...process.env, SLUICE_TLS_DIR: tlsDir, SLUICE_ADMIN_TOKEN: ADMIN_TOKEN });
      expect({ levels, code: checked.code, output: checked.stdout + checked.stderr }).toEqual({ levels, code: 0, output: expect.stringContaining('OK') });
      const missing = await runCli(['config', 'check', file], { ...process.env, SLUICE_TLS_DIR: path.join(dir, 'nowhere'), SLUICE_ADMIN_TOKEN: ADMIN_TOKEN });
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/listen\.tls\.cert_file: file not found: .*nowhere\/gateway\.crt/);
    }
  });

  it.each([
    ['a missing file', () => ({ listen: { tls: { cert_file: path.join(dir, 'nope.crt'), key_file: upstreamCert.key } } }), /listen\.tls\.cert_file: file not found: .*nope\.crt/],
    ['a key that is not the certificate\'s', () => ({ admin: { tls: { cert_file: upstreamCert.cert, key_file: gatewayCa.issue('x').key } } }), /admin\.tls\.key_file: .* does not match cert_file/],
    ['a CA file with no certificate', () => ({ upstreams: { app: { targets: ['https://127.0.0.1:9443'], tls: { ca_file: upstreamCert.key } } } }), /upstreams\.app\.tls\.ca_file: .*no PEM certificate/],
    ['a certificate file that is not PEM', () => ({ listen: { tls: { cert_file: upstreamCert.key, key_file: upstreamCert.key } } }), /listen\.tls\.cert_file: .*is not valid PEM/],
    ['tls on an http:// upstream', () => ({ upstreams: { app: { targets: ['http://127.0.0.1:9001'], tls: { ca_file: upstreamCa.cert } } } }), /upstreams\.app\.tls: applies to https:\/\/ targets only/],
    ['client_auth without ca_file', () => ({ listen: { tls: { cert_file: upstreamCert.cert, key_file: upstreamCert.key, client_auth: 'require' } } }), /listen\.tls\.ca_file: required with client_auth/],
    ['an upstream cert_file without key_file', () => ({ upstreams: { app: { targets: ['https://127.0.0.1:9443'], tls: { cert_file: upstreamCert.cert } } } }), /upstreams\.app\.tls\.key_file: cert_file and key_file go together/],
    ['an IP address as servername', () => ({ upstreams: { app: { targets: ['https://127.0.0.1:9443'], tls: { servername: '127.0.0.1' } } } }), /upstreams\.app\.tls\.servername: expected a host name, not an IP address/],
    ['an unknown client_auth', () => ({ listen: { tls: { cert_file: upstreamCert.cert, key_file: upstreamCert.key, ca_file: clientCa.cert, client_auth: 'sometimes' } } }), /listen\.tls\.client_auth: expected one of require, optional/],
  ])('refuses %s with a clear message', async (_what, overrides, message) => {
    const result = await check('check-bad', minimal(overrides()));
    expect(result.code).toBe(1);
    expect(result.output).toMatch(message);
    expect(result.output).not.toMatch(/PRIVATE KEY|BEGIN/);
  });
});

/**
 * The example's commented TLS blocks (`# tls:` and `# billing:` with the lines under them),
 * uncommented: `levels` 1 takes the first `# ` off (the settings shown), 2 also the optional ones.
 */
function uncommentTlsBlocks(text: string, levels: number): string {
  const lines = text.split('\n');
  let blockIndent: string | undefined;
  return lines
    .map((line) => {
      const start = /^(\s*)# (tls:|billing:)/.exec(line);
      if (start) blockIndent = start[1];
      else if (blockIndent === undefined || !line.startsWith(`${blockIndent}#   `)) blockIndent = undefined;
      if (blockIndent === undefined) return line;
      let out = blockIndent + line.slice(blockIndent.length + 2);
      if (levels > 1) out = out.replace(/^(\s*)# /, '$1');
      return out;
    })
    .join('\n');
}

// ---------------------------------------------------------------------------------------------
// Clients

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Writes `payload` over a TLS connection (trusting the gateway CA) and returns what came back until close. */
function tlsExchange(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    const socket = tls.connect({ host: '127.0.0.1', port, ca: readPem(gatewayCa.cert), servername: 'localhost' }, () => socket.write(payload));
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.once('error', (err) => (received ? resolve(received) : reject(err)));
    socket.once('close', () => resolve(received));
    setTimeout(() => socket.destroy(), 5000).unref();
  });
}

/** GET `target` with the suite's key over TLS, reading the answer slowly: a pause of `pauseMs` after each chunk. */
function tlsDownload(port: number, target: string, options: { pauseMs: number }): Promise<{ bodyBytes: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let received = 0;
    let headBytes = -1;
    let head = '';
    const socket = tls.connect({ host: '127.0.0.1', port, ca: readPem(gatewayCa.cert), servername: 'localhost' }, () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${KEY}\r\nConnection: close\r\n\r\n`),
    );
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (headBytes < 0) {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end >= 0) headBytes = Buffer.byteLength(head.slice(0, end + 4), 'latin1');
      }
      socket.pause();
      setTimeout(() => socket.resume(), options.pauseMs);
    });
    socket.once('error', () => undefined);
    socket.once('close', () => resolve({ bodyBytes: received - Math.max(0, headBytes), ms: Date.now() - started }));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`download did not end within 30 s (${received} bytes)`));
    }, 30_000);
    socket.once('close', () => clearTimeout(timer));
  });
}

/** Over TLS, declares a body of `bytes` and keeps sending it; resolves with what came back once the gateway closes. */
function tlsRefusedUpload(port: number, bytes: number): Promise<string> {
  return new Promise((resolve) => {
    let received = '';
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const socket = tls.connect({ host: '127.0.0.1', port, ca: readPem(gatewayCa.cert), servername: 'localhost' }, () => {
      socket.write(`POST /echo HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${KEY}\r\ncontent-length: ${bytes}\r\n\r\n`);
      let sent = 0;
      const pump = () => {
        while (sent < bytes && !socket.destroyed) {
          sent += chunk.length;
          if (!socket.write(chunk)) return void socket.once('drain', pump);
        }
      };
      pump();
    });
    socket.on('data', (data) => (received += data.toString('latin1')));
    socket.once('error', () => undefined);
    socket.once('close', () => resolve(received));
    setTimeout(() => socket.destroy(), 10_000).unref();
  });
}

/** Sends raw bytes on a plain TCP connection and resolves once the server closes it (or after 8 s, failing). */
function rawClose(port: number, payload: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      if (payload.length > 0) socket.write(payload);
    });
    socket.on('data', () => undefined);
    socket.once('error', () => undefined);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the gateway did not close the connection'));
    }, 8000);
  });
}
