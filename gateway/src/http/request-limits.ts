import type { ServerOptions } from 'node:http';
import type { Config } from '../config/schema';

/**
 * How node reads a request, the same on the public and the admin listener: the header size cap
 * (431), the time to send all headers (408, the slowloris guard), and no bare 400 from node for a
 * missing Host (framingError answers it with an envelope).
 */
export function requestLimits(listen: Config['listen']): ServerOptions {
  return {
    maxHeaderSize: listen.max_header_bytes,
    headersTimeout: listen.headers_timeout,
    // How often node checks that timeout (default 30 s would make a short one meaningless).
    connectionsCheckingInterval: Math.min(1000, Math.max(100, listen.headers_timeout / 2)),
    // Bodies are timed by their gaps (listen.body_timeout), not as a whole.
    requestTimeout: 0,
    requireHostHeader: false,
  };
}
