import { readFileSync } from 'node:fs';
import net from 'node:net';

/** Where the kernel picks ports for outgoing connections (and for listen(0)). */
function ephemeralStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}
const EPHEMERAL_START = ephemeralStart();
const LOWEST = 20000;

/**
 * A port that was free a moment ago, for a server a test starts later (a gateway's admin port that a
 * CLI must find). Picked at random below the ephemeral range: a port from listen(0) was taken now and
 * then, between the check and the gateway's bind, by some other suite's outgoing connection.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20 && EPHEMERAL_START > LOWEST + 1000; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (EPHEMERAL_START - LOWEST));
    if (await canBind(port)) return port;
  }
  return bindAndRelease(0);
}

function canBind(port: number): Promise<boolean> {
  return bindAndRelease(port).then(
    () => true,
    () => false,
  );
}

function bindAndRelease(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const bound = (server.address() as net.AddressInfo).port;
      server.close((err) => (err ? reject(err) : resolve(bound)));
    });
  });
}

/**
 * A port where nothing listens, for "connection refused" upstreams (checked: a connect really is
 * refused). Below the ephemeral range, no outgoing connection takes it meanwhile.
 */
export async function closedPort(): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    if (await isRefused(port)) return port;
  }
  throw new Error('closedPort: could not find a port that refuses connections');
}

function isRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}
