import pino, { type Logger } from 'pino';

/**
 * JSON logs on stdout. Secrets never reach a log line: nothing logs a key or a token, and the
 * redaction below is a second line of defence for header objects that might be logged by mistake.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  // Written asynchronously, off the request path (lines that arrive while a write is under way go out
  // together in the next one); pino flushes what is pending when the process exits. Holding lines back
  // for bigger batches was tried: no gain we could measure, and lines up to 100 ms late.
  const stdout = destination ?? pino.destination({ dest: 1, sync: false });
  return pino(
    {
      level,
      base: { service: 'sluice' },
      timestamp: isoTime,
      redact: {
        paths: ['headers["x-api-key"]', 'headers.authorization', '*.headers["x-api-key"]', '*.headers.authorization', 'password', '*.password', 'token', '*.token'],
        censor: '[redacted]',
      },
    },
    stdout,
  );
}

/** What an access-log line may hold: flat values only (undefined ones are left out, as pino does). */
export type AccessFields = Record<string, string | number | readonly string[] | undefined>;

/**
 * The access log: one line per request in `log`'s format (its stream, level and bindings), serialised
 * here. pino's generic serialiser (redaction, serializers, hooks) cost more than the rest of the line,
 * and these lines carry only fields finish.ts chooses, none of them a header object or a secret.
 * It follows `log`'s level (a reload that changes it applies to both).
 */
export class AccessLog {
  private readonly stream: { write(line: string): unknown };
  /** `,"service":"sluice"` and the child bindings (a worker's id and pid), serialised once by pino. */
  private readonly bindings: string;

  constructor(private readonly log: Logger) {
    const internals = log as unknown as Record<symbol, unknown>;
    this.stream = internals[pino.symbols.streamSym] as AccessLog['stream'];
    this.bindings = internals[pino.symbols.chindingsSym] as string;
  }

  get enabled(): boolean {
    return this.log.isLevelEnabled('info');
  }

  /** One line at info level, `msg` last, as pino writes it. */
  info(fields: AccessFields, msg: string): void {
    let line = `{"level":30${isoTime()}${this.bindings}`;
    for (const name in fields) {
      const value = fields[name];
      if (value === undefined) continue;
      // JSON.stringify escapes what a client sent (a request id, a traceparent) and writes NaN as null.
      line += `,"${name}":${typeof value === 'number' && Number.isFinite(value) ? value : JSON.stringify(value)}`;
    }
    this.stream.write(`${line},"msg":${JSON.stringify(msg)}}\n`);
  }
}

// pino's isoTime formats a Date for every line; lines of the same millisecond share one text.
let lastMs = 0;
let lastTime = '';
function isoTime(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}
