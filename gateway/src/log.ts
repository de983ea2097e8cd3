import pino, { type Logger } from 'pino';
import { SERVICE, stdoutLog } from './log-output';

/**
 * JSON logs on stdout. Secrets never reach a log line: nothing logs a key or a token, and the
 * redaction below is a second line of defence for header objects that might be logged by mistake.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  // One turn's lines go out together, without ever waiting for a slow reader (log-output.ts). Holding
  // lines back for bigger batches was tried: no gain we could measure, and lines up to 100 ms late.
  const stdout = destination ?? stdoutLog();
  return pino(
    {
      level,
      base: { service: SERVICE },
      timestamp: isoTime,
      redact: {
        paths: ['headers["x-api-key"]', 'headers.authorization', '*.headers["x-api-key"]', '*.headers.authorization', 'password', '*.password', 'token', '*.token'],
        censor: '[redacted]',
      },
    },
    stdout,
  );
}

/** What one access-log line says about a request; undefined values are left out (as pino does). */
export interface AccessEntry {
  requestId: string;
  route?: string;
  method?: string;
  status?: number;
  code?: string;
  upstream?: string;
  consumerId?: string;
  tier?: string;
  client?: string;
  traceparent?: string | readonly string[];
  /** node's code for a request its parser refused */
  parserError?: string;
}

/**
 * The access log: one line per request in `log`'s format (its stream, level and bindings), serialised
 * here, its fields in a fixed order. pino's generic serialiser (redaction, serializers, hooks) cost
 * more than the rest of the line, and so did a fields object walked name by name (twice this
 * function, measured); these lines carry only the fields below, none of them a header object or a
 * secret. It follows `log`'s level (a reload that changes it applies to both), and writes to `log`'s
 * stream, which sends one turn's lines together (log-output.ts).
 */
export class AccessLog {
  private readonly stream: { write(text: string): unknown };
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

  /** One line at info level, msg "request" last, as pino writes `log.info({ request_id, ... }, 'request')`. */
  request(entry: AccessEntry, durationMs: number): void {
    let line = `{"level":30${isoTime()}${this.bindings},"request_id":${jsonString(entry.requestId)}`;
    if (entry.route !== undefined) line += `,"route":${jsonString(entry.route)}`;
    if (entry.method !== undefined) line += `,"method":${jsonString(entry.method)}`;
    if (entry.status !== undefined) line += `,"status":${jsonNumber(entry.status)}`;
    if (entry.code !== undefined) line += `,"code":${jsonString(entry.code)}`;
    line += `,"duration_ms":${jsonNumber(durationMs)}`;
    if (entry.upstream !== undefined) line += `,"upstream":${jsonString(entry.upstream)}`;
    if (entry.consumerId !== undefined) line += `,"consumer_id":${jsonString(entry.consumerId)}`;
    if (entry.tier !== undefined) line += `,"tier":${jsonString(entry.tier)}`;
    if (entry.client !== undefined) line += `,"client":${jsonString(entry.client)}`;
    if (entry.traceparent !== undefined) line += `,"traceparent":${typeof entry.traceparent === 'string' ? jsonString(entry.traceparent) : JSON.stringify(entry.traceparent)}`;
    if (entry.parserError !== undefined) line += `,"parser_error":${jsonString(entry.parserError)}`;
    this.stream.write(`${line},"msg":"request"}\n`);
  }
}

// Most values need no escaping (names, addresses, generated ids): JSON.stringify only for the others,
// which escapes what a client sent (a request id, a traceparent).
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const jsonString = (value: string): string => (PLAIN.test(value) ? `"${value}"` : JSON.stringify(value));
// As JSON.stringify writes them: NaN and the infinities as null.
const jsonNumber = (value: number): string | number => (Number.isFinite(value) ? value : 'null');

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
