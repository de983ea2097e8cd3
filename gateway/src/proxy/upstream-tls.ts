import type { ConnectionOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { Config, UpstreamTls } from '../config/schema';
import { loadTlsFiles } from '../config/tls-files';

/**
 * How the pools of an upstream with `tls:` connect to its https:// targets: its CA instead of the
 * system's, the name to ask for and check, a client certificate. The files are read now (a pool is
 * built at start and again when a reload changed them). Undefined: node's defaults (system CAs, the
 * target's host name).
 */
export function upstreamTlsOptions(tls: UpstreamTls | undefined): ConnectionOptions | undefined {
  if (!tls) return undefined;
  const { ca, cert, key } = loadTlsFiles(tls);
  const options: ConnectionOptions = { rejectUnauthorized: tls.reject_unauthorized };
  if (ca) options.ca = ca;
  if (cert) options.cert = cert;
  if (key) options.key = key;
  if (tls.servername) options.servername = tls.servername;
  return options;
}

/** Upstreams that accept any certificate: said once per start and reload, never silently. */
export function warnUnverifiedUpstreams(config: Config, log: Logger): void {
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    if (upstream.tls?.reject_unauthorized === false) {
      log.warn({ upstream: name }, 'upstream TLS certificates are not verified (tls.reject_unauthorized: false): anyone on the path can impersonate it');
    }
  }
}
