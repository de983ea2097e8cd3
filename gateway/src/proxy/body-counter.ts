import { Transform, type TransformCallback } from 'node:stream';

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/** Passes the body through while counting it; fails the stream the moment it goes over `limit`. */
export class BodyCounter extends Transform {
  bytes = 0;
  overLimit = false;
  /** Date.now() of the last chunk from the client (listen.body_timeout). */
  lastChunkAt = Date.now();

  constructor(private readonly limit: number) {
    super();
  }

  /** Whether it holds data the upstream has not taken yet: a pause that is the upstream's, not the client's. */
  get backedUp(): boolean {
    return this.readableLength >= this.readableHighWaterMark || this.writableLength > 0;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.lastChunkAt = Date.now();
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      this.overLimit = true;
      done(new BodyTooLargeError(this.limit));
      return;
    }
    done(null, chunk);
  }
}
