import pino, { type Logger } from 'pino';

/**
 * JSON logs on stdout. Secrets never reach a log line: nothing logs a key or a token, and the
 * redaction below is a second line of defence for header objects that might be logged by mistake.
 */
export function createLogger(level: string): Logger {
  // Written asynchronously, off the request path, in batches: one write per 4 KB of lines (an access
  // line each request would otherwise be a write each), and at least every 100 ms so a quiet gateway's
  // lines still appear at once. pino flushes what is pending when the process exits.
  const stdout = pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 100 });
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

/**
 * The access log: `log` without the redaction pass, which costs more than the rest of the line. Its
 * lines carry only fields finish.ts chooses, none of them a header object or a secret. It follows
 * `log`'s level (a reload that changes it applies to both).
 */
export function accessLogger(log: Logger): Logger {
  return log.child({}, { redact: [] });
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
