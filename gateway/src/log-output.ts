import { constants, fstatSync, openSync, writeSync } from 'node:fs';
import pino from 'pino';

/**
 * Where every log line of this process goes (pino's and the access log's): one writer per process, so
 * lines keep their order. Lines written during one turn of the event loop go out together at its end.
 *
 * Why not sonic-boom alone: its async mode hands each write to libuv's thread pool, and with the
 * gateway on one core every hand-off cost two context switches (0.4 per request under the headline
 * load, 0.04 without); its sync mode waits, event loop and all, while a pipe is full.
 * Here a pipe (what Docker and Kubernetes give a container) is written without blocking from this
 * thread, through a file description of our own opened O_NONBLOCK; when it is full the lines wait in
 * memory and are tried again a few ms later, so a slow log reader never stalls requests. Files and
 * character devices (/dev/null, a terminal) are written directly, as pino's default destination does.
 * A socket (what node's child_process calls a pipe) keeps sonic-boom's async mode.
 *
 * What waits for a reader that does not keep up is bounded (MAX_HELD_BYTES): past it lines are
 * dropped and counted (sluice_log_lines_dropped_total), and one line says how many once lines flow
 * again. Unbounded, a stalled log reader grew the gateway's heap until it died; blocking would stall
 * every request instead.
 */
export interface LogOutput {
  write(text: string): void;
  /** Writes everything held, waiting if it must: for the process's exit. */
  flushSync(): void;
}

/** Linux's PIPE_BUF: a write of at most this many bytes to a pipe lands whole, never mixed with another process's. */
export const ATOMIC_PIPE_WRITE = 4096;
const NEWLINE = 0x0a;
/** At most this much log text waits for the reader (per process); more is dropped. */
export const MAX_HELD_BYTES = 16 * 1024 * 1024;
const RETRY_FIRST_MS = 2;
const RETRY_MAX_MS = 100;
/** The `service` every line carries (createLogger's base binding, and the dropped-lines note). */
export const SERVICE = 'sluice';

let droppedLines = 0;

/** Log lines this process dropped because its log reader did not keep up. */
export function logLinesDropped(): number {
  return droppedLines;
}

function countLines(text: string): number {
  let n = 0;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) n++;
  return n;
}

/** Said where lines flow again after some were dropped. */
function droppedNote(count: number): string {
  return `{"level":40,"time":"${new Date().toISOString()}","service":"${SERVICE}","dropped_lines":${count},"msg":"log lines dropped: the log reader did not keep up"}\n`;
}

/** Collects one turn's lines and hands them on together once the turn ends. */
abstract class TurnBatched implements LogOutput {
  protected pending = '';
  private scheduled = false;
  /** Lines dropped since the last note. */
  private unreported = 0;
  private readonly send = () => {
    this.scheduled = false;
    this.drain();
  };

  write(text: string): void {
    if (this.waitingBytes() + text.length > MAX_HELD_BYTES) return this.drop(countLines(text));
    if (this.unreported > 0) {
      this.pending += droppedNote(this.unreported);
      this.unreported = 0;
    }
    this.pending += text;
    if (!this.scheduled && !this.waiting()) {
      this.scheduled = true;
      setImmediate(this.send);
    }
  }

  /** Whether lines wait for room (a retry is already due): no need to try at the end of this turn. */
  protected waiting(): boolean {
    return false;
  }

  protected drop(lines: number): void {
    droppedLines += lines;
    this.unreported += lines;
  }

  /** Text held for the reader (a string's length stands for its bytes: log lines are mostly ASCII). */
  protected abstract waitingBytes(): number;
  protected abstract drain(): void;
  abstract flushSync(): void;
}

/** A pipe, file or character device, written from this thread without ever waiting for room. */
export class FdOutput extends TurnBatched {
  /** Bytes taken from `pending` and not yet written, from `offset` on. */
  private held?: Buffer;
  private offset = 0;
  private retry?: NodeJS.Timeout;
  private retryMs = RETRY_FIRST_MS;
  private broken = false;

  constructor(
    /** Written without waiting: O_NONBLOCK for a pipe (a file or device never says EAGAIN). */
    private readonly fd: number,
    /** The same destination as the process got it (may wait): for the exit. */
    private readonly blockingFd: number,
    /** A pipe: writes of whole lines, at most ATOMIC_PIPE_WRITE bytes each when lines allow. */
    private readonly isPipe: boolean,
  ) {
    super();
  }

  protected override waiting(): boolean {
    return this.retry !== undefined;
  }

  protected waitingBytes(): number {
    return this.pending.length + (this.held ? this.held.length - this.offset : 0);
  }

  protected drain(): void {
    this.take();
    let progressed = false;
    while (this.held) {
      try {
        this.writeNext(this.fd);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return this.giveUp();
        // The reader is taking lines: come back soon. Not at all: less and less often.
        if (progressed) this.retryMs = RETRY_FIRST_MS;
        return this.retryLater();
      }
      progressed = true;
    }
    this.retryMs = RETRY_FIRST_MS;
  }

  /** One write of what is held to `fd`: on a pipe, whole lines of at most ATOMIC_PIPE_WRITE bytes when lines allow. */
  private writeNext(fd: number): void {
    const held = this.held!;
    const end = this.isPipe ? chunkEnd(held, this.offset) : held.length;
    this.offset += writeSync(fd, held, this.offset, end - this.offset);
    if (this.offset === held.length) this.held = undefined;
  }

  /** The pipe is full: try again a little later. */
  private retryLater(): void {
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.drain();
    }, this.retryMs);
    this.retry.unref(); // the exit writes what is left
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  /** Nobody reads any more (EPIPE) or the descriptor is gone: logging must not stop the gateway. */
  private giveUp(): void {
    this.broken = true;
    this.held = undefined;
    this.pending = '';
  }

  override write(text: string): void {
    if (!this.broken) super.write(text);
  }

  /** Moves what was written since the last drain behind the bytes still held. */
  private take(): void {
    if (this.pending === '') return;
    const more = Buffer.from(this.pending);
    this.pending = '';
    this.held = this.held ? Buffer.concat([this.held.subarray(this.offset), more]) : more;
    this.offset = 0;
  }

  flushSync(): void {
    clearTimeout(this.retry);
    this.retry = undefined;
    this.take();
    const give = Date.now() + 10_000; // a reader that never reads again cannot hold the exit for ever
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (this.held && !this.broken) {
      try {
        this.writeNext(this.blockingFd);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > give) return this.giveUp();
        Atomics.wait(pause, 0, 0, 1); // the destination itself is non-blocking: wait 1 ms
      }
    }
  }
}

/**
 * Where the next write ends: after the last whole line that fits in ATOMIC_PIPE_WRITE bytes, or after
 * the first line when that one alone is longer (it is written in as many pieces as it takes).
 */
export function chunkEnd(bytes: Buffer, from: number): number {
  if (bytes.length - from <= ATOMIC_PIPE_WRITE) return bytes.length;
  const lastFitting = bytes.lastIndexOf(NEWLINE, from + ATOMIC_PIPE_WRITE - 1);
  if (lastFitting >= from) return lastFitting + 1;
  const first = bytes.indexOf(NEWLINE, from);
  return first === -1 ? bytes.length : first + 1;
}

/** A socket, or a pipe we could not reopen: sonic-boom's async writes (libuv's thread pool). */
class PooledOutput extends TurnBatched {
  private readonly boom: pino.DestinationStream;

  constructor(fd: number) {
    super();
    // sonic-boom holds what the socket has not taken: bounded too, its drops counted with ours.
    this.boom = pino.destination({ dest: fd, sync: false, maxLength: MAX_HELD_BYTES });
    (this.boom as unknown as NodeJS.EventEmitter).on('drop', (text: string) => this.drop(countLines(text)));
  }

  protected waitingBytes(): number {
    return this.pending.length;
  }

  protected drain(): void {
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    this.boom.write(text);
  }

  flushSync(): void {
    this.drain();
    // pino flushes its own destinations when the process exits, after us (registered later).
  }
}

/** The output for descriptor `fd`, chosen by what it is (see LogOutput). */
export function openLogOutput(fd: number): LogOutput {
  const stat = fstatSync(fd);
  if (stat.isFIFO()) {
    try {
      // Our own file description of the same pipe: O_NONBLOCK there leaves the one we share alone.
      return new FdOutput(openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK), fd, true);
    } catch {
      return new PooledOutput(fd); // no /proc
    }
  }
  if (stat.isFile() || stat.isCharacterDevice()) return new FdOutput(fd, fd, false);
  return new PooledOutput(fd);
}

let stdout: LogOutput | undefined;

/** This process's standard output, opened once and shared by every logger. */
export function stdoutLog(): LogOutput {
  return (stdout ??= openLogOutput(1));
}

// Registered when this module loads, before pino registers its own exit flush: our lines go first.
process.on('exit', () => stdout?.flushSync());
