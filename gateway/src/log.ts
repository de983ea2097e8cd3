import pino, { type Logger } from 'pino';

/**
 * JSON logs on stdout. Secrets never reach a log line: nothing logs a key or a token, and the
 * redaction below is a second line of defence for header objects that might be logged by mistake.
 */
export function createLogger(level: string): Logger {
  // Written asynchronously, off the request path (lines that arrive while a write is under way go out
  // together in the next one); pino flushes what is pending when the process exits. Holding lines back
  // for bigger batches was tried: no gain we could measure, and lines up to 100 ms late.
  const stdout = pino.destination({ dest: 1, sync: false });
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
