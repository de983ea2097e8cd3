import net from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { envelopeProblem } from '../support/envelope';
import { startKeyedGateway, type TestGateway } from '../support/gateway';
import { heapAfterGcMb, INSPECT_OPTIONS } from '../support/inspector';
import { waitFor } from '../support/wait';
import { failedChecks, percentile, recordRow, tally, type ReliabilityRow } from '../support/reliability';
import type { TestUpstream } from '../support/upstream';

// Protocol fuzzing of the public listener over raw sockets: malformed and hostile requests in
// categories, each drawn from a seeded PRNG (SLUICE_FUZZ_SEED replays a run), while a control client
// keeps sending valid requests through the same listener. One result row per category.

const SEED = Number(process.env.SLUICE_FUZZ_SEED ?? 20261125) >>> 0;
const KEY = 'sk_test_fuzz_7c1d0e5a9b3f4e21';
const HEADERS_TIMEOUT_MS = 2000;
// A slow client must be cut within the headers timeout plus two of node's check intervals (1 s each) and slack.
const SLOW_CUT_BOUND_MS = HEADERS_TIMEOUT_MS + 2 * 1000 + 1500;
// Leaks are judged by the heap still live after a full collection (support/inspector.ts): RSS follows
// V8's heuristics, which let old space grow to several times what is live before collecting. 100,000
// requests that each kept 100 bytes would add 10 MB.
const LIVE_HEAP_GROWTH_LIMIT_MB = 8;
// What a pod may use (k8s/base/deployment.yaml limits memory at 512Mi), with a quarter kept as headroom.
const PEAK_RSS_LIMIT_MB = 384;
const SLOW_CONNECTIONS = 96;
// After the gateway closes its side it gives the client 2 s (server.ts LINGER_MS) before letting go.
const LINGER_SLACK_MS = 3000;
// One-shot exchanges half-close after this long without a byte from the gateway: EOF ends an
// incomplete request, so the gateway must answer or close instead of waiting for more.
const IDLE_MS = 250;
const EXCHANGE_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Seeded randomness

interface Rng {
  next(): number;
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
  bytes(n: number): Buffer;
}

/** mulberry32: tiny, fast, and good enough to spread cases; the same seed gives the same payloads. */
function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: (items) => items[int(items.length)],
    chance: (p) => next() < p,
    bytes: (n) => Buffer.from(Array.from({ length: n }, () => int(256))),
  };
}

/** Each category draws from its own stream, so one category replays without running the others. */
function categorySeed(name: string): number {
  let h = SEED ^ 0x811c9dc5;
  for (const ch of name) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Cases and what came back

interface FuzzCase {
  payload: Buffer;
  /** Sent on a connection of its own (the gateway closes after most of these). Else on a reused keep-alive connection. */
  oneShot: boolean;
  /** The request is HEAD: answers carry no body. */
  head?: boolean;
  /** Sub-kind, for diagnostics. */
  label: string;
  /** What this case must get beyond a well-formed answer; returns the problem, if any. */
  expect?: (outcome: Outcome) => string | undefined;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

interface Outcome {
  /** Final answers (1xx interim answers are checked, then left out). */
  answers: Answer[];
  /** Problems with what came back: malformed HTTP, a body that is not an envelope, a hang. */
  problems: string[];
  timedOut: boolean;
}

const CRLF = '\r\n';
const latin1 = (text: string) => Buffer.from(text, 'latin1');

/** A request from its head lines (request line first) and body. */
function message(lines: Array<string | null | undefined>, body = ''): Buffer {
  return latin1(lines.filter((l): l is string => typeof l === 'string').join(CRLF) + CRLF + CRLF + body);
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * One response at the start of `buf`. 'more' when incomplete (unless `atEof`), a string when
 * malformed; strict: HTTP/1.1 status line, token header names, a length or chunked framing.
 */
function parseOne(buf: Buffer, head: boolean, atEof: boolean): { answer: Answer; end: number } | 'more' | string {
  const incomplete = atEof ? 'truncated answer' : 'more';
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd === -1) return buf.length > 64 * 1024 ? 'answer head over 64 KB' : incomplete;
  const lines = buf.toString('latin1', 0, headEnd).split(CRLF);
  const statusLine = /^HTTP\/1\.1 ([1-5]\d\d) [\x20-\x7e]*$/.exec(lines[0]);
  if (!statusLine) return `bad status line ${JSON.stringify(lines[0].slice(0, 80))}`;
  const status = Number(statusLine[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    if (colon <= 0 || !TOKEN.test(name)) return `bad header line ${JSON.stringify(line.slice(0, 80))}`;
    const value = line.slice(colon + 1).trim();
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) return `control character in header ${name}`;
    const lower = name.toLowerCase();
    if (lower in headers && (lower === 'content-length' || lower === 'transfer-encoding')) return `duplicate ${lower}`;
    headers[lower] = lower in headers ? `${headers[lower]}, ${value}` : value;
  }
  const start = headEnd + 4;
  if (status < 200 || status === 204 || status === 304 || head) return { answer: { status, headers, body: Buffer.alloc(0) }, end: start };

  if (headers['transfer-encoding'] !== undefined) {
    if (headers['transfer-encoding'].toLowerCase() !== 'chunked') return `transfer-encoding ${headers['transfer-encoding']}`;
    if ('content-length' in headers) return 'both content-length and transfer-encoding';
    const parts: Buffer[] = [];
    let at = start;
    for (;;) {
      const lineEnd = buf.indexOf(CRLF, at);
      if (lineEnd === -1) return incomplete;
      const size = /^([0-9a-fA-F]{1,8})(;[^\r\n]*)?$/.exec(buf.toString('latin1', at, lineEnd));
      if (!size) return `bad chunk size ${JSON.stringify(buf.toString('latin1', at, Math.min(lineEnd, at + 20)))}`;
      const n = parseInt(size[1], 16);
      at = lineEnd + 2;
      if (n === 0) {
        // No trailers from this gateway: the last chunk is followed by the empty line.
        if (buf.length < at + 2) return incomplete;
        if (buf[at] !== 13 || buf[at + 1] !== 10) return 'trailers or garbage after the last chunk';
        return { answer: { status, headers, body: Buffer.concat(parts) }, end: at + 2 };
      }
      if (buf.length < at + n + 2) return incomplete;
      if (buf[at + n] !== 13 || buf[at + n + 1] !== 10) return 'chunk data not followed by CRLF';
      parts.push(buf.subarray(at, at + n));
      at += n + 2;
    }
  }
  if (headers['content-length'] !== undefined) {
    if (!/^\d+$/.test(headers['content-length'])) return `bad content-length ${headers['content-length']}`;
    const end = start + Number(headers['content-length']);
    if (buf.length < end) return incomplete;
    return { answer: { status, headers, body: buf.subarray(start, end) }, end };
  }
  // No length: the body runs to the end of the connection.
  if (!atEof) return 'more';
  return { answer: { status, headers, body: buf.subarray(start) }, end: buf.length };
}

/** An error answer must be the seed envelope with the catalogue's status for its code. */
function answerProblem(answer: Answer, head: boolean): string | undefined {
  return envelopeProblem(answer.status, answer.headers, head ? undefined : answer.body.toString('utf8'));
}

/** Splits what one exchange received into answers and problems. */
function readAnswers(received: Buffer, head: boolean, atEof: boolean): { answers: Answer[]; problems: string[]; rest: Buffer; pending: boolean } {
  const answers: Answer[] = [];
  const problems: string[] = [];
  let buf = received;
  while (buf.length > 0) {
    const parsed = parseOne(buf, head, atEof);
    if (parsed === 'more') return { answers, problems, rest: buf, pending: true };
    if (typeof parsed === 'string') {
      problems.push(parsed);
      return { answers, problems, rest: Buffer.alloc(0), pending: false };
    }
    buf = buf.subarray(parsed.end);
    const problem = answerProblem(parsed.answer, head);
    if (problem) problems.push(problem);
    if (parsed.answer.status >= 200) {
      answers.push(parsed.answer);
      // A request the parser refused gets its envelope body even if it said HEAD: the parser never got that far.
      if (isClosing(parsed.answer) && buf.length > 0 && !head) problems.push('bytes after an answer that closes the connection');
      // After one final answer the exchange is over (see oneShot): later bytes belong to requests we did not wait for.
      return { answers, problems, rest: Buffer.alloc(0), pending: false };
    }
  }
  return { answers, problems, rest: buf, pending: false };
}

const isClosing = (answer: Answer) => /(^|,)\s*close\s*(,|$)/i.test(answer.headers.connection ?? '');

/**
 * A connection of its own: write the payload and read until the gateway closes, or until one final
 * answer that keeps the connection open. Quiet for IDLE_MS: half-close, so an incomplete request ends.
 */
function oneShot(port: number, c: FuzzCase): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let timedOut = false;
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => socket.end(), IDLE_MS);
    };
    const hard = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, EXCHANGE_TIMEOUT_MS);
    const finish = (atEof: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      clearTimeout(hard);
      const { answers, problems } = readAnswers(Buffer.concat(chunks), c.head === true, atEof);
      if (timedOut) problems.push(`no answer and no close within ${EXCHANGE_TIMEOUT_MS} ms`);
      socket.destroy();
      resolve({ answers, problems, timedOut });
    };
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      armIdle();
      const { answers } = readAnswers(Buffer.concat(chunks), c.head === true, false);
      if (answers.length > 0 && !isClosing(answers[0])) finish(false);
    });
    socket.on('error', () => {}); // a reset after the gateway refused the request: 'close' follows
    socket.on('close', () => finish(true));
    socket.write(c.payload, () => {
      if (!done) armIdle();
    });
  });
}

/** A keep-alive connection reused for request after request, as long as the gateway keeps it open. */
class KeepAliveLane {
  private socket: net.Socket | null = null;
  private buffer: Buffer = Buffer.alloc(0);
  private closed = false;
  private wake: (() => void) | null = null;

  constructor(private readonly port: number) {}

  private open(): net.Socket {
    const socket = net.connect(this.port, '127.0.0.1');
    this.buffer = Buffer.alloc(0);
    this.closed = false;
    // A dropped socket's late events must not touch its successor's state.
    socket.on('data', (chunk) => {
      if (socket !== this.socket) return;
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake?.();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (socket !== this.socket) return;
      this.closed = true;
      this.wake?.();
    });
    this.socket = socket;
    return socket;
  }

  private activity(until: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve(false);
      }, Math.max(0, until - Date.now()));
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve(true);
      };
    });
  }

  async exchange(c: FuzzCase): Promise<Outcome> {
    const socket = this.socket && !this.closed ? this.socket : this.open();
    socket.write(c.payload);
    const deadline = Date.now() + EXCHANGE_TIMEOUT_MS;
    for (;;) {
      const { answers, problems, rest, pending } = readAnswers(this.buffer, c.head === true, this.closed);
      if (answers.length > 0 || problems.length > 0 || (this.closed && !pending)) {
        this.buffer = rest;
        if (answers.length === 0 || problems.length > 0 || isClosing(answers[0]) || this.closed) this.drop();
        return { answers, problems, timedOut: false };
      }
      if (!(await this.activity(deadline))) {
        this.drop();
        return { answers: [], problems: [`no answer and no close within ${EXCHANGE_TIMEOUT_MS} ms`], timedOut: true };
      }
    }
  }

  drop(): void {
    this.socket?.destroy();
    this.socket = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Around each category: the control client, RSS, liveness, the log

interface ControlStats {
  sent: number;
  statuses: Record<string, number>;
  latencies: number[];
}

/** Valid requests, back to back on two keep-alive connections from another loopback address, until stopped. */
function startControl(gateway: TestGateway): { stop(): Promise<ControlStats> } {
  // 127.0.0.2: a client of its own, so the fuzzing address's failed-key record never touches it.
  const dispatcher = new Agent({ localAddress: '127.0.0.2', connections: 2, keepAliveTimeout: 10_000 });
  const stats: ControlStats = { sent: 0, statuses: {}, latencies: [] };
  let running = true;
  const loop = async () => {
    while (running) {
      const started = performance.now();
      stats.sent++;
      try {
        const res = await request(`http://127.0.0.1:${gateway.port}/control/ok`, {
          headers: { 'x-api-key': KEY },
          dispatcher,
          headersTimeout: 5000,
          bodyTimeout: 5000,
        });
        await res.body.text();
        tally(stats.statuses, res.statusCode);
      } catch (err) {
        tally(stats.statuses, `error ${(err as Error).message}`);
      }
      stats.latencies.push(performance.now() - started);
      await delay(5);
    }
  };
  const loops = [loop(), loop()];
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      await dispatcher.close();
      return stats;
    },
  };
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

/** The gateway's highest RSS while a category runs, sampled every 200 ms. */
function sampleRss(pid: number): { stop(): { maxMb: number } } {
  let maxMb = 0;
  const sample = () => {
    try {
      maxMb = Math.max(maxMb, rssMb(pid));
    } catch {
      // the process is gone: the liveness check reports it
    }
  };
  sample();
  const timer = setInterval(sample, 200);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return { maxMb };
    },
  };
}

const alive = (gateway: TestGateway) => gateway.process.exitCode === null && gateway.process.signalCode === null;

/** Problems with what the upstream was sent: every path normalised, and never under /admin (the key lacks that scope). */
function forwardedProblem(url: string): string | undefined {
  if (!url.startsWith('/')) return 'not an origin-form target';
  const path = url.split('?')[0];
  if (/%(2f|5c|00)|\\/i.test(path)) return 'an encoded separator, backslash or NUL';
  const segments = path.split('/').slice(1);
  for (const [i, segment] of segments.entries()) {
    const decoded = safeDecode(segment);
    if (decoded === undefined) return 'an invalid percent-encoding';
    if (decoded === '.' || decoded === '..') return 'a dot segment';
    if (segment === '' && i < segments.length - 1) return 'an empty segment';
  }
  if (safeDecode(segments[0]) === 'admin') return 'a path under /admin, which the key may not reach';
  return undefined;
}

function safeDecode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The gateway under test, and a host nobody should reach

let gateway: TestGateway;
let upstream: TestUpstream;
let stopAll: () => Promise<void>;
let evilServer: net.Server;
const evil = { connections: 0, port: 0 };
let baselineLiveHeapMb = 0;
/** Open fds of the gateway at rest: its listeners, log pipes, the inspector's listener and what its store holds open. */
let restingFds = 0;
let logCursor = 0;

// ---------------------------------------------------------------------------------------------
// The categories

interface Check {
  name: string;
  pass: boolean;
  detail?: string;
}

interface CategoryContext {
  port: number;
  evilPort: number;
}

interface Category {
  name: string;
  count: number;
  lanes: number;
  generate(r: Rng, i: number, ctx: CategoryContext): FuzzCase;
  /** Checks on the world after the run (the upstream's requests, the evil host). */
  after?(): { checks: Check[]; figures?: Record<string, string | number> };
  /** Name of the check that gathers each case's `expect`. */
  expectCheck?: string;
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];
const keyLine = (r: Rng, p = 0.5) => (r.chance(p) ? `x-api-key: ${KEY}` : null);

/** A well-formed request (without its key) to mutate or cut. */
function validRequest(r: Rng): string {
  const method = r.pick(METHODS);
  const body = method === 'POST' || method === 'PUT' ? '{"fuzz":true}' : '';
  const lines = [`${method} /fuzz/${r.pick(['ok', 'a/ok', 'v1/x'])}?q=${r.int(1000)} HTTP/1.1`, 'host: fuzz.test', 'accept: */*'];
  if (body) lines.push('content-type: application/json', `content-length: ${body.length}`);
  if (r.chance(0.3)) lines.push('transfer-encoding: chunked');
  return lines.join(CRLF) + CRLF + CRLF + (lines.includes('transfer-encoding: chunked') ? '' : body);
}

/**
 * The key line goes in after mutating, intact, behind the first line break: a mangled key would be a
 * failed attempt, and enough of those make the failed-key guard refuse every later fuzz request
 * with 429 before it gets anywhere interesting.
 */
function withKey(r: Rng, request: Buffer): Buffer {
  const lineEnd = request.indexOf('\n');
  if (lineEnd === -1 || !r.chance(0.7)) return request;
  return Buffer.concat([request.subarray(0, lineEnd + 1), latin1(`x-api-key: ${KEY}${CRLF}`), request.subarray(lineEnd + 1)]);
}

function mutate(r: Rng, text: string): Buffer {
  let bytes = [...latin1(text)];
  const n = 1 + r.int(8);
  for (let i = 0; i < n; i++) {
    const at = r.int(bytes.length + 1);
    switch (r.int(5)) {
      case 0:
        bytes[Math.min(at, bytes.length - 1)] = r.int(256);
        break;
      case 1:
        bytes.splice(at, 0, r.int(256));
        break;
      case 2:
        bytes.splice(at, 1 + r.int(4));
        break;
      case 3:
        bytes.splice(at, 0, ...latin1(r.pick(['\r', '\n', '\r\n', ' ', ':', '\t', '\0', '\x7f', '%', '/..'])));
        break;
      default: {
        const from = r.int(bytes.length);
        bytes.splice(at, 0, ...bytes.slice(from, from + 1 + r.int(16)));
      }
    }
  }
  if (bytes.length === 0) bytes = [r.int(256)];
  return Buffer.from(bytes);
}

const randomBytes: Category = {
  name: 'random bytes',
  count: 20_000,
  lanes: 128,
  generate(r) {
    switch (r.int(4)) {
      case 0:
        return { label: 'raw bytes', oneShot: true, payload: r.bytes(1 + r.int(1024)) };
      case 1: {
        const alphabet = 'GETPOSHTP/1. \r\n:abcxyz-0123456789%?=&\t';
        const text = Array.from({ length: 1 + r.int(512) }, () => alphabet[r.int(alphabet.length)]).join('');
        return { label: 'token soup', oneShot: true, payload: latin1(text) };
      }
      case 2:
        return { label: 'mutated request', oneShot: true, payload: withKey(r, mutate(r, validRequest(r))) };
      default: {
        const whole = withKey(r, latin1(validRequest(r)));
        return { label: 'cut request', oneShot: true, payload: whole.subarray(0, 1 + r.int(whole.length - 1)) };
      }
    }
  },
};

const requestLine: Category = {
  name: 'broken request lines',
  count: 15_000,
  lanes: 128,
  generate(r) {
    const method = r.pick([
      ...METHODS,
      'get',
      'Get',
      'G ET',
      'GE',
      'GETT',
      'FOO',
      'PRI',
      'BREW',
      'M-SEARCH',
      'GET\0',
      'GET\x7f',
      '\x01GET',
      'ÄET',
      'GET' + 'X'.repeat(1000),
      '',
      '/',
    ]);
    const target = r.pick([
      '/ok',
      '/fuzz/ok?x=1',
      '',
      '*',
      '/ok#frag',
      '/o k',
      '/ok\0',
      '/\x01',
      '/\x7f',
      '/\xff',
      '/%',
      'ok',
      '?x',
      '//ok',
      '/ok?' + 'a'.repeat(3000),
      'http:/ok',
      'http://',
      'evil.example:443',
      '/\t/ok',
      '/ok\r/x',
    ]);
    const sep1 = r.pick([' ', ' ', ' ', '  ', '\t', '', '\x0b', '\r', '\0']);
    const sep2 = r.pick([' ', ' ', ' ', '  ', '\t', '', '\x0b', '\n']);
    const version = r.pick([
      'HTTP/1.1',
      'HTTP/1.1',
      'HTTP/1.0',
      'HTTP/1.2',
      'HTTP/2.0',
      'HTTP/3',
      'HTTP/0.9',
      'HTTP/1',
      'HTTP/1.1 ',
      'http/1.1',
      'HTTP/11',
      'HTTP/1.1x',
      'HTTP/-1.1',
      'HTTPS/1.1',
      'HTTP/1.1\0',
      'HTTP/9.9',
      'HTTP/1.01',
      '',
    ]);
    const eol = r.pick([CRLF, CRLF, CRLF, '\n', '\r', '\n\r', '\r\r\n']);
    const line = `${method}${sep1}${target}${sep2}${version}`;
    const rest = ['host: fuzz.test', keyLine(r)].filter(Boolean).join(CRLF);
    return { label: 'request line', oneShot: true, payload: latin1(`${r.chance(0.1) ? CRLF : ''}${line}${eol}${rest}${CRLF}${CRLF}`) };
  },
};

const headerSyntax: Category = {
  name: 'invalid headers',
  count: 15_000,
  lanes: 128,
  generate(r) {
    const names = ['x-fuzz', 'x fuzz', 'x-fuzz ', ' x-fuzz', 'x\0fuzz', 'x\x7ffuzz', '(x)', '[x]', 'x/y', 'x"y', 'é', '', 'x-fuzz\t', 'x@y', 'x{y}', 'x\rfuzz'];
    const values = [
      'ok',
      'a\0b',
      'a\x01b',
      'a\x7fb',
      'a\rb',
      'a\nb',
      'a\r\n  folded',
      '\r\n folded',
      'a\x0bb',
      '\xff\xfe',
      'é',
      ' spaced ',
      'a\tb',
      'a'.repeat(r.int(4000)),
      '%00',
    ];
    const lines: Array<string | null> = [`${r.pick(['GET', 'POST', 'DELETE'])} /fuzz/ok HTTP/1.1`];
    // Host: sometimes missing or repeated, which HTTP/1.1 forbids.
    const host = r.int(10);
    if (host > 1) lines.push('host: fuzz.test');
    if (host === 1) lines.push('host: fuzz.test', 'host: other.test');
    lines.push(keyLine(r));
    const bad = 1 + r.int(3);
    for (let i = 0; i < bad; i++) {
      switch (r.int(6)) {
        case 0:
          lines.push(`${r.pick(names)}: ${r.pick(values)}`);
          break;
        case 1:
          lines.push(`x-fuzz-${i}: ${r.pick(values)}`);
          break;
        case 2:
          lines.push(r.pick(['no colon here', ':empty-name', 'x-fuzz:', 'x-fuzz;: y', 'x-fuzz : y', 'x-fuzz\r\n\tfolded: y']));
          break;
        case 3:
          lines.push(`expect: ${r.pick(['100-continue', 'foo', '200-ok', '', '100-continue, foo'])}`);
          break;
        case 4:
          lines.push(`${r.pick(['host', 'connection', 'x-request-id', 'x-forwarded-for', 'content-type', 'upgrade'])}: ${r.pick(values)}`);
          break;
        default:
          // Bare LF or CR as a line end.
          lines.push(`x-fuzz-${i}: ok${r.pick(['\n', '\r'])}x-after: ok`);
      }
    }
    return { label: 'headers', oneShot: true, payload: message(lines) };
  },
};

const oversized: Category = {
  name: 'oversized headers',
  count: 2_000,
  lanes: 64,
  expectCheck: 'oversized headers answered 431 headers_too_large (or closed)',
  generate(r) {
    // node counts names and values (not separators) against max_header_bytes (16 KB): every case is well over.
    const size = 20_000 + r.int(50_000);
    const lines: string[] = [];
    let target = '/fuzz/ok';
    let label: string;
    switch (r.int(4)) {
      case 0:
        label = 'one huge value';
        lines.push(`x-big: ${'v'.repeat(size)}`);
        break;
      case 1: {
        label = 'many headers';
        const each = 8 + r.int(40);
        for (let n = 0; n * each < size; n++) lines.push(`x-h${n}: ${'v'.repeat(each)}`);
        break;
      }
      case 2:
        label = 'huge target';
        target = `/fuzz/${'p'.repeat(size)}`;
        break;
      default:
        label = 'huge name';
        lines.push(`x-${'n'.repeat(size)}: v`);
    }
    return {
      label,
      oneShot: true,
      payload: message([`GET ${target} HTTP/1.1`, 'host: fuzz.test', keyLine(r), ...lines]),
      expect: (o) => (o.answers.length === 0 || o.answers[0].status === 431 ? undefined : `answered ${o.answers[0].status}`),
    };
  },
};

// Requests an upstream would read differently from a front proxy: every one must be refused.
function smugglingFraming(r: Rng): { label: string; lines: string[]; version?: string } {
  const cl = String(r.int(40));
  const chunked = r.pick(['chunked', 'Chunked', 'CHUNKED']);
  switch (r.int(12)) {
    case 0:
      return { label: 'CL then TE', lines: [`content-length: ${cl}`, `transfer-encoding: ${chunked}`] };
    case 1:
      return { label: 'TE then CL', lines: [`transfer-encoding: ${chunked}`, `content-length: ${cl}`] };
    case 2:
      return { label: 'two content-lengths', lines: [`content-length: ${cl}`, `content-length: ${Number(cl) + 1 + r.int(9)}`] };
    case 3:
      return { label: 'content-length list', lines: [`content-length: ${cl}, ${r.pick([cl, String(Number(cl) + 3)])}`] };
    case 4:
      return { label: 'chunked not last', lines: [`transfer-encoding: ${r.pick(['chunked, identity', 'chunked, gzip', 'chunked, chunked', 'chunked,x'])}`] };
    case 5:
      return { label: 'unknown coding', lines: [`transfer-encoding: ${r.pick(['xchunked', 'chunkedx', 'chunked-false', 'identity', 'gzip', 'x', 'chunk', '"chunked"'])}`] };
    case 6:
      return { label: 'coding before chunked', lines: [`transfer-encoding: ${r.pick(['gzip, chunked', 'identity, chunked', 'deflate,chunked'])}`] };
    case 7:
      return { label: 'split TE', lines: r.pick([['transfer-encoding: identity', 'transfer-encoding: chunked'], ['transfer-encoding: chunked', 'transfer-encoding: identity'], ['transfer-encoding: gzip', `transfer-encoding: ${chunked}`]]) };
    case 8:
      return { label: 'TE spelled oddly', lines: [r.pick(['transfer-encoding : chunked', 'transfer-encoding:\x0bchunked', 'transfer-encoding: chunked\x00', 'transfer-encoding:\r\n chunked', ' transfer-encoding: chunked', 'transfer-encoding: \x0cchunked'])] };
    case 9:
      return { label: 'TE in HTTP/1.0', lines: [`transfer-encoding: ${chunked}`], version: 'HTTP/1.0' };
    case 10:
      return { label: 'bad content-length', lines: [`content-length: ${r.pick(['+4', '-4', '0x4', '4.0', '4 4', '4a', '', '99999999999999999999', '4\x00', '1e2'])}`] };
    default:
      return { label: 'CL and TE, zero', lines: ['content-length: 0', `transfer-encoding: ${chunked}`] };
  }
}

const smuggling: Category = {
  name: 'request smuggling',
  count: 10_000,
  lanes: 128,
  expectCheck: 'every smuggling attempt answered 400 invalid_request, then closed',
  generate(r, i) {
    const framing = smugglingFraming(r);
    const smuggled = `GET /smuggled/${i}/ok HTTP/1.1${CRLF}host: fuzz.test${CRLF}x-api-key: ${KEY}${CRLF}${CRLF}`;
    // A body each reading could take: the chunked terminator, or bytes a length would cover, then the second request.
    const body = r.pick([`0${CRLF}${CRLF}${smuggled}`, `${smuggled}`, `5${CRLF}abcde${CRLF}0${CRLF}${CRLF}${smuggled}`, `x=1${smuggled}`]);
    const payload = message(
      [`${r.pick(['POST', 'GET', 'PUT'])} /smuggle/${i}/ok ${framing.version ?? 'HTTP/1.1'}`, 'host: fuzz.test', `x-api-key: ${KEY}`, ...framing.lines],
      body,
    );
    return {
      label: framing.label,
      oneShot: true,
      payload,
      expect: (o) => {
        const [first] = o.answers;
        if (!first) return 'closed without an answer';
        const code = safeJson(first.body)?.error?.code;
        if (first.status !== 400 || code !== 'invalid_request') return `answered ${first.status} ${code ?? ''}`;
        if (!isClosing(first)) return 'the 400 kept the connection open';
        return undefined;
      },
    };
  },
  after() {
    const reached = upstream.requests.filter((req) => /\/smuggl/.test(req.url));
    return {
      checks: [
        {
          name: 'no smuggling request (outer or embedded) reached the upstream',
          pass: reached.length === 0,
          detail: reached.slice(0, 3).map((q) => `${q.method} ${q.url}`).join(', '),
        },
      ],
      figures: { 'smuggled requests upstream': reached.length },
    };
  },
};

const chunkedBodies: Category = {
  name: 'invalid chunked bodies',
  count: 10_000,
  lanes: 128,
  expectCheck: 'every invalid chunked body answered, never 2xx: 400 invalid_request once the body breaks (or an earlier refusal)',
  generate(r) {
    const good = `5${CRLF}abcde${CRLF}`;
    const [label, broken]: [string, string] = r.pick<[string, string]>([
      ['non-hex size', `${r.pick(['zz', 'g', '0x5', 'five', '5g', '%35'])}${CRLF}abcde${CRLF}0${CRLF}${CRLF}`],
      ['signed size', `${r.pick(['-1', '-0', '+5', '-5'])}${CRLF}abcde${CRLF}0${CRLF}${CRLF}`],
      ['spaced size', `${r.pick([' 5', '5 x', '5\t\t', '\t5'])}${CRLF}abcde${CRLF}0${CRLF}${CRLF}`],
      ['overflowing size', `${r.pick(['ffffffffffffffffffff', '1' + '0'.repeat(16 + r.int(30)), 'fffffffffffffffff', '7fffffffffffffff1'])}${CRLF}abcde${CRLF}0${CRLF}${CRLF}`],
      ['no CRLF after size', `5abcde${CRLF}0${CRLF}${CRLF}`],
      ['no CRLF after data', `5${CRLF}abcde0${CRLF}${CRLF}`],
      ['data longer than size', `3${CRLF}abcde${CRLF}0${CRLF}${CRLF}`],
      ['bare LF', `5\nabcde\n0\n\n`],
      ['bare CR', `5\rabcde\r0\r\r`],
      ['control char in extension', `5;${r.pick(['\x00', '\x01', '\x7f'])}${CRLF}abcde${CRLF}0${CRLF}${CRLF}`],
      ['no last chunk', good],
      ['bad trailer', `0${CRLF}${r.pick(['bad trailer', ': x', 'x\0: y'])}${CRLF}${CRLF}`],
      ['empty size', `${CRLF}abcde${CRLF}0${CRLF}${CRLF}`],
    ]);
    const prefix = r.chance(0.5) ? good : '';
    const payload = message([`${r.pick(['POST', 'PUT', 'PATCH'])} /chunked/ok HTTP/1.1`, 'host: fuzz.test', keyLine(r, 0.7), 'transfer-encoding: chunked'], prefix + broken);
    return {
      label,
      oneShot: true,
      payload,
      expect: (o) => {
        if (o.answers.length === 0) return 'closed without an answer';
        if (o.answers.some((a) => a.status < 300)) return `answered ${o.answers[0].status}`;
        const code = safeJson(o.answers[0].body)?.error?.code;
        // A key that reached the upstream, so the body was being read: only the body's fault can end it.
        if (o.answers[0].status !== 400 && !['missing_api_key', 'invalid_api_key', 'rate_limit_exceeded', 'too_many_failed_attempts'].includes(code)) {
          return `answered ${o.answers[0].status} ${code}`;
        }
        return undefined;
      },
    };
  },
};

function safeJson(body: Buffer): any {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

const absoluteAndConnect: Category = {
  name: 'absolute-form and CONNECT',
  count: 8_000,
  lanes: 64,
  expectCheck: 'CONNECT answered 400 invalid_request; absolute-form answered',
  generate(r, i, { evilPort }) {
    const authority = r.pick([
      `127.0.0.1:${evilPort}`,
      `localhost:${evilPort}`,
      'evil.example',
      'evil.example:443',
      `user:pw@127.0.0.1:${evilPort}`,
      `[::1]:${evilPort}`,
      `127.0.0.1:${evilPort}@fuzz.test`,
      '',
    ]);
    const host = r.pick([`host: ${authority || 'fuzz.test'}`, 'host: fuzz.test', `host: 127.0.0.1:${evilPort}`]);
    if (r.chance(0.25)) {
      const tunnel = r.pick([`GET /tunneled/${i}/ok HTTP/1.1${CRLF}host: fuzz.test${CRLF}x-api-key: ${KEY}${CRLF}${CRLF}`, '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03', '']);
      const target = r.pick([authority || 'evil.example:443', `127.0.0.1:${evilPort}`, '/tunneled/ok', `http://127.0.0.1:${evilPort}/`]);
      return {
        label: 'CONNECT',
        oneShot: true,
        payload: message([`CONNECT ${target} HTTP/1.1`, host, keyLine(r, 0.7)], tunnel),
        expect: (o) => {
          const [first] = o.answers;
          if (!first) return 'closed without an answer';
          const code = safeJson(first.body)?.error?.code;
          return first.status === 400 && code === 'invalid_request' ? undefined : `answered ${first.status} ${code ?? ''}`;
        },
      };
    }
    const scheme = r.pick(['http', 'http', 'https', 'HTTP', 'hTtP', 'ws', 'ftp', 'file']);
    const path = r.pick(['/ok', '/fuzz/ok', '/admin/ok', '', '/a/../ok', '/%2e%2e/admin/ok', '?x=1', '/ok?next=http://evil.example/']);
    const method = r.pick(['GET', 'GET', 'HEAD', 'DELETE', 'OPTIONS']);
    return {
      label: 'absolute-form',
      oneShot: false,
      head: method === 'HEAD',
      payload: message([`${method} ${scheme}://${authority}${path} HTTP/1.1`, host, keyLine(r, 0.8), `x-request-id: fz-abs-${i}`]),
      expect: (o) => (o.answers.length === 0 ? 'closed without an answer' : undefined),
    };
  },
  after() {
    const reachedUpstream = upstream.requests.filter((req) => req.url.includes('/tunneled/'));
    return {
      checks: [
        { name: 'nothing connected to the absolute-form or CONNECT host', pass: evil.connections === 0, detail: `${evil.connections} connections` },
        { name: 'no tunneled request reached the upstream', pass: reachedUpstream.length === 0, detail: reachedUpstream.map((q) => q.url).slice(0, 3).join(', ') },
      ],
      figures: { 'connections to the named host': evil.connections },
    };
  },
};

const PATH_SEGMENTS = [
  'ok', 'ok', 'a', 'v1', 'admin', 'ADMIN', '%61dmin', 'adm%69n', '..', '..', '.', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%2e', '',
  '..%2f', '%2f', '%2F..', '%5c', '..%5c', '\\', '..\\', '%00', 'a%00b', '%c0%ae%c0%ae', '%c0%af', '%e0%80%ae', '%ef%bc%8f',
  '%25', '%252e%252e', '%252f', ';', '..;', 'a;b=c', '~', '%7e', '%zz', '%', '%2', 'a%20b', "!$&'()*+,=:@", '%u002e', '....',
  '...', '.a', 'a.', '%0d%0a', '%0a', '\xc3\xa9', '%C3%A9', '\xc0\xae', '%ff', '%F0%9F%92%A9',
];

const pathTricks: Category = {
  name: 'path tricks',
  count: 22_000,
  lanes: 64,
  expectCheck: 'every path trick answered',
  generate(r, i) {
    const segments = Array.from({ length: 1 + r.int(6) }, () => r.pick(PATH_SEGMENTS));
    if (r.chance(0.8)) segments.push('ok');
    const sep = () => r.pick(['/', '/', '/', '/', '//', '/./', '\\', '/%2f']);
    let target = segments.map((s) => sep() + s).join('');
    if (r.chance(0.05)) target = target.slice(1); // no leading slash
    target += r.pick(['', '', '?a=1', '?x=/../admin', '?%2e%2e=%00', '#frag', '?next=//evil.example']);
    const method = r.pick(['GET', 'GET', 'GET', 'HEAD', 'DELETE', 'POST']);
    const body = method === 'POST' ? 'x=1' : '';
    const payload = message(
      [`${method} ${target} HTTP/1.1`, 'host: fuzz.test', r.chance(0.9) ? `x-api-key: ${KEY}` : null, `x-request-id: fz-path-${i}`, body ? `content-length: ${body.length}` : null],
      body,
    );
    return {
      label: 'path',
      oneShot: false,
      head: method === 'HEAD',
      payload,
      // Whether a trick escaped shows in what the upstream got (commonChecks): normalised, never under /admin.
      expect: (o) => (o.answers.length === 0 ? 'closed without an answer' : undefined),
    };
  },
};

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  // A host absolute-form and CONNECT targets name: anything reaching it is a forward-proxy hole.
  evilServer = net.createServer((socket) => {
    evil.connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => evilServer.listen(0, '127.0.0.1', resolve));
  evil.port = (evilServer.address() as net.AddressInfo).port;

  const started = await startKeyedGateway(KEY, {
    listen: { host: '127.0.0.1', port: 0, headers_timeout: `${HEADERS_TIMEOUT_MS / 1000}s` },
    // The key may use the catch-all route but not /admin: a path that escapes into /admin shows.
    tiers: { t: { limits: [], scopes: ['public'] } },
    routes: [
      { name: 'all', match: { path_prefix: '/' }, upstream: 'app' },
      { name: 'admin', match: { path_prefix: '/admin' }, upstream: 'app', scopes: ['admin'] },
    ],
    // Everything the gateway logs is checked for the key: parser refusals (debug) included.
    log: { level: 'debug' },
  }, { ...process.env, NODE_OPTIONS: INSPECT_OPTIONS });
  ({ gateway, upstream } = started);
  stopAll = started.stop;
  console.log(`fuzz seed ${SEED} (SLUICE_FUZZ_SEED=${SEED} replays this run)`);

  // Warm-up: JIT, pools and heap settle before the RSS baseline.
  const control = startControl(gateway);
  const warm = rng(SEED ^ 0xabcdef);
  const lanes = Array.from({ length: 32 }, () => new KeepAliveLane(gateway.port));
  await Promise.all(
    lanes.map(async (lane, n) => {
      for (let i = 0; i < 60; i++) {
        await lane.exchange(pathTricks.generate(warm, n * 1000 + i, { port: gateway.port, evilPort: evil.port }));
        await oneShot(gateway.port, randomBytes.generate(warm, i, { port: gateway.port, evilPort: evil.port }));
      }
      lane.drop();
    }),
  );
  await control.stop();
  await delay(500);
  restingFds = await restingFdCount();
  baselineLiveHeapMb = await settledLiveHeapMb();
  logCursor = gateway.output.length;
  upstream.reset();
}, 60_000);

afterAll(async () => {
  await stopAll?.();
  await new Promise((resolve) => evilServer?.close(resolve));
});

/**
 * The live heap once the gateway is at rest: it has written out what its log held back and let go of
 * the connections of the traffic just sent (closed ones linger 2 s, idle upstream ones 4 s). Neither
 * is a leak; what is still live after that is.
 */
async function settledLiveHeapMb(): Promise<number> {
  let lines = -1;
  await waitFor(() => lines === (lines = gateway.output.length), 10_000, { intervalMs: 250, what: 'the gateway log to go quiet' });
  await waitFor(() => openFds(gateway.pid) <= restingFds, 10_000, { intervalMs: 100 }).catch(() => {
    // still holding connections: measure anyway, the growth check shows what they keep
  });
  return heapAfterGcMb(gateway);
}

/** The gateway's open fds once the warm-up's connections are gone (the count stops falling for 1 s). */
async function restingFdCount(): Promise<number> {
  let fds = openFds(gateway.pid);
  let stableSince = performance.now();
  await waitFor(
    () => {
      const now = openFds(gateway.pid);
      if (now < fds) [fds, stableSince] = [now, performance.now()];
      return performance.now() - stableSince >= 1000;
    },
    15_000,
    { intervalMs: 100, what: 'the warm-up connections to close' },
  );
  return fds;
}

/** The checks every category shares: liveness, control, memory, the log, what the upstream was sent. */
async function commonChecks(control: ControlStats, rss: { maxMb: number }) {
  const checks: Check[] = [];
  const crashes = alive(gateway) ? 0 : 1;
  checks.push({ name: 'gateway alive (0 crashes)', pass: crashes === 0, detail: crashes ? `exited with ${gateway.process.exitCode ?? gateway.process.signalCode}` : undefined });

  const served = control.statuses['200'] ?? 0;
  checks.push({
    name: 'every control request served 200',
    pass: control.sent > 0 && served === control.sent,
    detail: `${served}/${control.sent}: ${JSON.stringify(control.statuses)}`,
  });

  checks.push({ name: `peak RSS under ${PEAK_RSS_LIMIT_MB} MB`, pass: rss.maxMb < PEAK_RSS_LIMIT_MB, detail: `${rss.maxMb.toFixed(1)} MB` });
  const liveHeapMb = crashes ? NaN : await settledLiveHeapMb();
  const growth = liveHeapMb - baselineLiveHeapMb;
  checks.push({
    name: `live heap after a full GC grew under ${LIVE_HEAP_GROWTH_LIMIT_MB} MB`,
    pass: growth < LIVE_HEAP_GROWTH_LIMIT_MB,
    detail: `${liveHeapMb.toFixed(1)} MB, ${baselineLiveHeapMb.toFixed(1)} MB after warm-up`,
  });

  const lines = gateway.output.slice(logCursor);
  logCursor = gateway.output.length;
  const leaked = lines.filter((line) => line.includes(KEY)).length;
  checks.push({ name: 'API key never in the gateway log', pass: leaked === 0, detail: leaked ? `${leaked} lines` : undefined });
  const errors = lines.filter((line) => /"level":(50|60)/.test(line));
  checks.push({ name: 'no error logged', pass: errors.length === 0, detail: errors.slice(0, 2).join(' | ').slice(0, 400) });

  const forwarded = upstream.requests.map((req) => ({ req, problem: forwardedProblem(req.url) })).filter((f) => f.problem);
  checks.push({
    name: 'every path the upstream got is normalised and in scope',
    pass: forwarded.length === 0,
    detail: forwarded
      .slice(0, 3)
      .map((f) => `${f.req.method} ${f.req.url} (${f.req.headers['x-request-id']}): ${f.problem}`)
      .join('; '),
  });
  return { checks, crashes, liveHeapMb };
}

async function runCategory(category: Category): Promise<ReliabilityRow> {
  upstream.reset();
  const started = performance.now();
  const control = startControl(gateway);
  const rss = sampleRss(gateway.pid);
  const ctx = { port: gateway.port, evilPort: evil.port };

  const statuses: Record<string, number> = {};
  const codes: Record<string, number> = {};
  const malformed: string[] = [];
  const unmet: string[] = [];
  let malformedCount = 0;
  let unmetCount = 0;
  const r = rng(categorySeed(category.name));
  let next = 0;
  // The key is a test key, but rows end up in RELIABILITY.md: keep it out of them anyway.
  const example = (i: number, c: FuzzCase, problem: string) =>
    `#${i} ${c.label}: ${problem}; sent ${JSON.stringify(c.payload.toString('latin1').slice(0, 160).replaceAll(KEY, '<key>'))}`;

  await Promise.all(
    Array.from({ length: category.lanes }, async () => {
      const lane = new KeepAliveLane(gateway.port);
      while (next < category.count) {
        const i = next++;
        const c = category.generate(r, i, ctx);
        const outcome = c.oneShot ? await oneShot(gateway.port, c) : await lane.exchange(c);
        if (outcome.answers.length === 0) tally(statuses, outcome.timedOut ? 'timeout' : 'closed');
        for (const answer of outcome.answers) {
          tally(statuses, answer.status);
          const code = answer.status >= 400 ? safeJson(answer.body)?.error?.code : undefined;
          if (code) tally(codes, code);
        }
        for (const problem of outcome.problems) {
          if (malformedCount++ < 5) malformed.push(example(i, c, problem));
        }
        const unmetBy = c.expect?.(outcome);
        if (unmetBy && unmetCount++ < 5) unmet.push(example(i, c, unmetBy));
      }
      lane.drop();
    }),
  );

  const controlStats = await control.stop();
  const rssStats = rss.stop();
  const durationMs = Math.round(performance.now() - started);
  const common = await commonChecks(controlStats, rssStats);
  const after = category.after?.();
  // Fuzz traffic never sends a wrong key: a 429 here means the run stopped reaching the pipeline.
  const blocked = codes.too_many_failed_attempts ?? 0;
  const checks: Check[] = [
    {
      name: 'every answer well-formed HTTP/1.1, every error a catalogue envelope (or closed)',
      pass: malformedCount === 0,
      detail: malformedCount ? `${malformedCount} problems, e.g. ${malformed.join(' | ')}` : undefined,
    },
    ...(category.expectCheck
      ? [{ name: category.expectCheck, pass: unmetCount === 0, detail: unmetCount ? `${unmetCount} cases, e.g. ${unmet.join(' | ')}` : undefined }]
      : []),
    ...(after?.checks ?? []),
    ...common.checks,
    { name: 'fuzz traffic never blocked by the failed-key guard (coverage intact)', pass: blocked === 0, detail: blocked ? `${blocked} answers` : undefined },
  ];

  return {
    suite: 'fuzzing',
    case: category.name,
    sent: category.count,
    statuses,
    codes,
    crashes: common.crashes,
    figures: {
      'requests/s': Math.round(category.count / (durationMs / 1000)),
      'peak RSS MB': Number(rssStats.maxMb.toFixed(1)),
      'live heap MB': Number(common.liveHeapMb.toFixed(1)),
      'control requests': controlStats.sent,
      'control p99 ms': Number(percentile(controlStats.latencies, 99).toFixed(1)),
      ...after?.figures,
    },
    checks,
    durationMs,
    seed: SEED,
  };
}

const categories: Category[] = [
  randomBytes,
  requestLine,
  headerSyntax,
  oversized,
  smuggling,
  chunkedBodies,
  absoluteAndConnect,
  pathTricks,
];

describe('protocol fuzzing of the public listener', () => {
  it('sends at least 100,000 fuzz requests in all', () => {
    expect(categories.reduce((sum, c) => sum + c.count, 0)).toBeGreaterThanOrEqual(100_000);
  });

  it.each(categories.map((c) => [c.name, c] as const))('%s', async (_name, category) => {
    const row = await runCategory(category);
    recordRow(row);
    console.log(`${row.case}: ${JSON.stringify(row.statuses)} ${JSON.stringify(row.figures)} in ${row.durationMs} ms`);
    expect(failedChecks(row)).toBe('');
  });

  it('slowloris: slow or stalled clients are cut and released, and the control client is not held up', async () => {
    upstream.reset();
    const started = performance.now();
    const control = startControl(gateway);
    const rss = sampleRss(gateway.pid);
    await delay(200);
    const baselineFds = openFds(gateway.pid);
    const r = rng(categorySeed('slowloris'));
    const statuses: Record<string, number> = {};
    const codes: Record<string, number> = {};
    const problems: string[] = [];
    let slowestMs = 0;
    const held: net.Socket[] = [];
    const openers: Record<string, string> = {
      silent: '',
      'partial line': 'GET /fuzz/o',
      'trickled headers': `GET /fuzz/ok HTTP/1.1${CRLF}host: fuzz.test${CRLF}x-api-key: ${KEY}${CRLF}x-slow: `,
      'trickled after a request': `GET /fuzz/ok HTTP/1.1${CRLF}host: fuzz.test${CRLF}${CRLF}GET /fuzz/ok HTTP/1.1${CRLF}x-slow: `,
      'sparse bytes': `GET /fuzz/ok HTTP/1.1${CRLF}x-slow: `,
      // Answered at once; then the client just never closes its side.
      'refused, held open': `GET /\x01 HTTP/1.1${CRLF}${CRLF}`,
      'CONNECT refused, held open': `CONNECT evil.example:443 HTTP/1.1${CRLF}host: evil.example${CRLF}${CRLF}`,
    };
    const slowKinds = Object.keys(openers);

    await Promise.all(
      Array.from({ length: SLOW_CONNECTIONS }, async () => {
        const kind = r.pick(slowKinds);
        const trickles = !kind.includes('refused') && kind !== 'silent';
        const gapMs = kind === 'sparse bytes' ? 900 : 150 + r.int(200);
        const t0 = performance.now();
        // allowHalfOpen: like an attacker, the client keeps its side open after the gateway closes its own.
        const socket = net.connect({ port: gateway.port, host: '127.0.0.1', allowHalfOpen: true });
        held.push(socket);
        const received = await new Promise<Buffer>((resolve) => {
          const chunks: Buffer[] = [];
          const trickle = setInterval(() => trickles && socket.write('a'), gapMs);
          const cut = () => {
            clearInterval(trickle);
            clearTimeout(giveUp);
            resolve(Buffer.concat(chunks));
          };
          // Bounded: a connection the gateway never cuts is given up after twice the bound.
          const giveUp = setTimeout(cut, 2 * SLOW_CUT_BOUND_MS);
          socket.on('data', (chunk) => chunks.push(chunk));
          socket.on('error', () => {});
          socket.once('end', cut);
          socket.once('close', cut);
          if (openers[kind]) socket.write(openers[kind]);
        });
        const tookMs = performance.now() - t0;
        slowestMs = Math.max(slowestMs, tookMs);
        const { answers, problems: bad } = readAnswersAll(received);
        if (answers.length === 0) tally(statuses, 'closed');
        for (const answer of answers) {
          tally(statuses, answer.status);
          const code = safeJson(answer.body)?.error?.code;
          if (code) tally(codes, code);
        }
        // A slow request gets 408 or nothing (the complete one before it gets its own answer); a refused one 400.
        const expected = kind.includes('refused') ? 400 : 408;
        const slowAnswers = kind === 'trickled after a request' ? answers.slice(1) : answers;
        if (bad.length) problems.push(`${kind}: ${bad.join(', ')}`);
        if (tookMs > SLOW_CUT_BOUND_MS) problems.push(`${kind}: not cut after ${Math.round(tookMs)} ms`);
        if (slowAnswers.some((a) => a.status !== expected)) problems.push(`${kind}: answered ${slowAnswers.map((a) => a.status).join(', ')}`);
      }),
    );
    // Every client still holds its socket: the gateway must have let go of its end regardless.
    await delay(LINGER_SLACK_MS);
    const fdsAfter = openFds(gateway.pid);
    for (const socket of held) socket.destroy();

    const controlStats = await control.stop();
    const rssStats = rss.stop();
    const durationMs = Math.round(performance.now() - started);
    const { checks, crashes, liveHeapMb } = await commonChecks(controlStats, rssStats);
    checks.unshift(
      {
        name: `every slow connection got 408 request_timeout (400 if refused) or was closed within ${SLOW_CUT_BOUND_MS} ms, answers well-formed`,
        pass: problems.length === 0,
        detail: problems.slice(0, 5).join(' | '),
      },
      {
        name: 'the gateway released every connection its client held open',
        pass: fdsAfter <= baselineFds + 4,
        detail: `${fdsAfter} open fds with ${SLOW_CONNECTIONS} client sockets still open, ${baselineFds} before`,
      },
    );
    const p99 = percentile(controlStats.latencies, 99);
    checks.push({ name: 'control p99 under 1 s while slow clients hold connections', pass: p99 < 1000, detail: `${p99.toFixed(1)} ms` });
    const row: ReliabilityRow = {
      suite: 'fuzzing',
      case: 'slowloris',
      sent: SLOW_CONNECTIONS,
      statuses,
      codes,
      crashes,
      figures: {
        'slowest cut ms': Math.round(slowestMs),
        'headers timeout ms': HEADERS_TIMEOUT_MS,
        'gateway fds before/after': `${baselineFds}/${fdsAfter}`,
        'peak RSS MB': Number(rssStats.maxMb.toFixed(1)),
        'live heap MB': Number(liveHeapMb.toFixed(1)),
        'control requests': controlStats.sent,
        'control p99 ms': Number(p99.toFixed(1)),
      },
      checks,
      durationMs,
      seed: SEED,
    };
    recordRow(row);
    console.log(`${row.case}: ${JSON.stringify(row.statuses)} ${JSON.stringify(row.figures)} in ${row.durationMs} ms`);
    expect(failedChecks(row)).toBe('');
  });
});

/** Every answer on a connection the gateway closed (slowloris: a keep-alive answer, then the 408). */
function readAnswersAll(received: Buffer): { answers: Answer[]; problems: string[] } {
  const answers: Answer[] = [];
  const problems: string[] = [];
  let buf = received;
  while (buf.length > 0) {
    const parsed = parseOne(buf, false, true);
    if (typeof parsed === 'string') {
      problems.push(parsed);
      break;
    }
    const problem = answerProblem(parsed.answer, false);
    if (problem) problems.push(problem);
    if (parsed.answer.status >= 200) answers.push(parsed.answer);
    buf = buf.subarray(parsed.end);
  }
  return { answers, problems };
}
