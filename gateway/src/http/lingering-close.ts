import type { Socket } from 'node:net';

// After a refusal sent while the request body is still arriving, how long and how much of the rest
// is read and dropped before the connection is closed.
const LINGER_MS = 5_000;
const LINGER_BYTES = 1024 * 1024;

const lingering = new WeakSet<Socket>();

/**
 * Closing a connection whose request body is still arriving makes the kernel send a reset, which can
 * destroy our answer before the client reads it (a 408 or 413 the client never sees). So, like
 * nginx's lingering_close: when node would close the connection after this answer, we end our side
 * instead and read and drop what still comes, for up to 1 MB; past that we stop reading (the client's
 * writes then block, but it can still read), and the connection is closed 5 s after our answer.
 * Nothing that arrives meanwhile is served (isLingering).
 */
export function lingerOnClose(socket: Socket): void {
  socket.destroySoon = function lingerThenDestroy(this: Socket) {
    lingering.add(this);
    this.end();
    const readBefore = this.bytesRead;
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    const onData = () => {
      if (this.bytesRead - readBefore > LINGER_BYTES) this.pause();
    };
    this.on('data', onData);
    this.once('close', () => clearTimeout(timer));
  };
}

/** A connection closing after a refusal: what it still carries is read and dropped, never served. */
export function isLingering(socket: Socket): boolean {
  return lingering.has(socket);
}
