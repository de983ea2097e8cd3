import pino, { type Logger } from 'pino';

/**
 * JSON logs on stdout. Secrets never reach a log line: nothing logs a key or a token, and the
 * redaction below is a second line of defence for header objects that might be logged by mistake.
 */
export function createLogger(level: string): Logger {
  // Written asynchronously, off the request path; pino flushes what is pending when the process exits.
  const stdout = pino.destination({ dest: 1, sync: false });
  return pino(
    {
      level,
      base: { service: 'sluice' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['headers["x-api-key"]', 'headers.authorization', '*.headers["x-api-key"]', '*.headers.authorization', 'password', '*.password', 'token', '*.token'],
        censor: '[redacted]',
      },
    },
    stdout,
  );
}
