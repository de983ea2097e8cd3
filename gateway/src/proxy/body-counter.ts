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

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      this.overLimit = true;
      done(new BodyTooLargeError(this.limit));
      return;
    }
    done(null, chunk);
  }
}
