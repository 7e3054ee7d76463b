/**
 * Open-loop HTTP/1.1 load at a fixed rate, for the latency scenario
 * (bench/latency.ts). Request i is due at start + i/rate whatever happened to
 * the earlier ones; its latency runs from that scheduled time (not from when
 * it was actually written) to the last byte of its response, so a stall
 * anywhere, queueing for a free connection included, shows in the numbers
 * instead of silently lowering the load (no coordinated omission).
 *
 * A fixed pool of keep-alive connections, one request in flight on each (no
 * pipelining), each primed with one unmeasured request; responses are read by
 * a minimal parser that needs Content-Length. Node's timers tick in whole milliseconds, twice the 0.5 ms
 * interval at 2,000 req/s, so a worker thread sleeping in Atomics.wait
 * (sub-millisecond) wakes the main thread at each due time; the send lag
 * (actual − scheduled send time) is reported so the generator's own timing
 * error is visible. Everything is bounded: rate × duration requests, and a
 * hard stop at duration + 5 s after the start.
 *
 * Prints one JSON line (FixedRateReport) on stdout. Imports nothing from the
 * harness. Usage:
 * node bench/fixed-rate.ts --port PORT [--rate 2000] [--duration 10] [--connections 32] [--path /] [--host bench]
 */
import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

export interface Percentiles {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export interface FixedRateReport {
  readonly rate: number;
  readonly durationSec: number;
  readonly connections: number;
  /** Requests in the timetable (rate × duration). */
  readonly scheduled: number;
  readonly sent: number;
  /** Responses read in full, whatever their status. */
  readonly completed: number;
  /** Completed responses with a status outside 2xx/3xx. */
  readonly non2xx3xx: number;
  /** connect: failed (re)connections; io: requests lost to a closed or failed socket; protocol: unparsable responses. */
  readonly errors: { readonly connect: number; readonly io: number; readonly protocol: number };
  /** Sent but unanswered at the hard stop. */
  readonly unfinished: number;
  /** Never sent by the hard stop (no connection free). */
  readonly unsent: number;
  /** Most requests due at once but waiting for a free connection. */
  readonly maxQueued: number;
  /** Completed responses per second, from the first scheduled send to the last response. */
  readonly achievedRps: number;
  /** Scheduled send time → last response byte, ms (completed requests). */
  readonly latencyMs: Percentiles;
  /** Actual − scheduled send time, ms (sent requests): the generator's timing error plus queueing. */
  readonly sendLagMs: Percentiles;
  /** The generator's own CPU (both threads) from the first due time to the end, % of one core. */
  readonly cpuPct: number;
}

const GRACE_MS = 5_000;
const CONNECT_TIMEOUT_MS = 5_000;
/** Delay before the first due time, so the ticker thread is already waiting when it comes. */
const LEAD_MS = 20;
const RECONNECT_DELAY_MS = 10;
const MAX_RECONNECTS = 1_000;
const MAX_HEAD_BYTES = 64 * 1024;
/** Conn.inFlight when no request is in flight, and for the unmeasured priming request. */
const IDLE = -1;
const PRIMING = -2;
const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})/;
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r\n|$)/i;
const CHUNKED = /\r\ntransfer-encoding:[^\r]*chunked/i;
const CONNECTION_CLOSE = /\r\nconnection:[^\r]*close/i;

/**
 * The ticker: posts a message at each due time (or as soon as it can when
 * late, once for all overdue ones). Plain CommonJS for `eval: true`. Times are
 * in ms on process.hrtime's clock, the monotonic clock performance.now() reads
 * too, which threads share (performance.timeOrigin differs per thread).
 */
const TICKER = `
const { parentPort } = require('node:worker_threads');
const cell = new Int32Array(new SharedArrayBuffer(4));
const nowHr = () => Number(process.hrtime.bigint()) / 1e6;
parentPort.once('message', ({ startHr, intervalMs, count }) => {
  let i = 0;
  while (i < count) {
    const due = startHr + i * intervalMs;
    for (let wait = due - nowHr(); wait > 0; wait = due - nowHr()) Atomics.wait(cell, 0, 0, wait);
    parentPort.postMessage(i);
    i = Math.max(i + 1, Math.floor((nowHr() - startHr) / intervalMs) + 1);
  }
});
`;

interface Options {
  readonly port: number;
  readonly rate: number;
  readonly durationSec: number;
  readonly connections: number;
  readonly path: string;
  readonly host: string;
}

function readOptions(): Options {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      rate: { type: 'string', default: '2000' },
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '32' },
      path: { type: 'string', default: '/' },
      host: { type: 'string', default: 'bench' },
    },
    strict: true,
  });
  const int = (name: string, raw: string | undefined, min: number, max: number): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer in [${min}, ${max}], got "${raw ?? ''}"`);
    return n;
  };
  return {
    port: int('port', values.port, 1, 65_535),
    rate: int('rate', values.rate, 1, 100_000),
    durationSec: int('duration', values.duration, 1, 600),
    connections: int('connections', values.connections, 1, 1_024),
    path: values.path,
    host: values.host,
  };
}

/** Nearest-rank percentiles of the first `n` values of `samples` (sorted in place). */
function percentiles(samples: Float64Array, n: number): Percentiles {
  const sorted = samples.subarray(0, n).sort();
  const at = (p: number): number => (n === 0 ? Number.NaN : (sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))] ?? Number.NaN));
  let sum = 0;
  for (const v of sorted) sum += v;
  return { count: n, mean: n === 0 ? Number.NaN : sum / n, p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: at(100) };
}

interface Conn {
  readonly socket: Socket;
  connected: boolean;
  /** Index of the request in flight, IDLE or PRIMING. */
  inFlight: number;
  /** Bytes of the current response so far, when it came in more than one chunk. */
  pending: Buffer | undefined;
  /** Total length of the current response once its head is parsed, else -1. */
  need: number;
  status: number;
  closeAfter: boolean;
}

/** Runs the timetable; resolves with the report at the end or at the hard stop. */
async function run(opts: Options): Promise<FixedRateReport> {
  const request = Buffer.from(`GET ${opts.path} HTTP/1.1\r\nHost: ${opts.host}\r\n\r\n`, 'latin1');
  const scheduled = Math.round(opts.rate * opts.durationSec);
  const intervalMs = 1_000 / opts.rate;
  const latency = new Float64Array(scheduled);
  const lag = new Float64Array(scheduled);
  const errors = { connect: 0, io: 0, protocol: 0 };
  const free: Conn[] = [];
  const all = new Set<Conn>();
  let t0 = Number.POSITIVE_INFINITY;
  let sent = 0;
  let completed = 0;
  let failed = 0;
  let non2xx3xx = 0;
  let maxQueued = 0;
  let lastDone = Number.NaN;
  let reconnects = 0;
  let finished = false;
  let fatal: string | undefined;
  let primed = 0;
  let onPrimed: () => void = () => {};
  let onFinish: () => void = () => {};
  const due = (i: number): number => t0 + i * intervalMs;

  const pump = (): void => {
    if (finished) return;
    const now = performance.now();
    while (sent < scheduled && due(sent) <= now) {
      const conn = free.shift();
      if (conn === undefined) {
        // Every connection busy: the due requests wait (their latency still counts from their due time).
        maxQueued = Math.max(maxQueued, Math.min(scheduled, Math.floor((now - t0) / intervalMs) + 1) - sent);
        return;
      }
      lag[sent] = now - due(sent);
      conn.inFlight = sent++;
      conn.socket.write(request);
    }
  };

  const settle = (): void => {
    if (completed + failed >= scheduled) finish();
  };

  const fail = (conn: Conn, kind: 'io' | 'protocol'): void => {
    if (conn.inFlight === PRIMING) {
      fatal = `priming request failed (${kind} error)`;
      finish();
    } else if (conn.inFlight >= 0) {
      errors[kind]++;
      failed++;
      conn.inFlight = IDLE;
    } else if (kind === 'protocol') {
      errors.protocol++;
    }
    conn.socket.destroy();
    settle();
  };

  const complete = (conn: Conn): void => {
    const now = performance.now();
    const priming = conn.inFlight === PRIMING;
    if (!priming) {
      latency[completed++] = now - due(conn.inFlight);
      lastDone = now;
      if (conn.status < 200 || conn.status >= 400) non2xx3xx++;
    }
    conn.inFlight = IDLE;
    conn.pending = undefined;
    conn.need = -1;
    if (conn.closeAfter)
      conn.socket.destroy(); // reopened on 'close'
    else free.push(conn);
    if (priming) {
      if (++primed === opts.connections) onPrimed();
      return;
    }
    settle();
    pump();
  };

  const onData = (conn: Conn, chunk: Buffer): void => {
    if (conn.inFlight === IDLE) {
      fail(conn, 'protocol'); // bytes nobody asked for
      return;
    }
    const buf = conn.pending === undefined ? chunk : Buffer.concat([conn.pending, chunk]);
    if (conn.need < 0) {
      const headEnd = buf.indexOf(HEAD_END);
      if (headEnd < 0) {
        if (buf.length > MAX_HEAD_BYTES) {
          fail(conn, 'protocol');
          return;
        }
        conn.pending = buf;
        return;
      }
      const head = buf.toString('latin1', 0, headEnd);
      const status = STATUS_LINE.exec(head)?.[1];
      const length = CONTENT_LENGTH.exec(head)?.[1];
      if (status === undefined || length === undefined || CHUNKED.test(head)) {
        fail(conn, 'protocol');
        return;
      }
      conn.status = Number(status);
      conn.closeAfter = CONNECTION_CLOSE.test(head);
      conn.need = headEnd + HEAD_END.length + Number(length);
    }
    if (buf.length < conn.need) {
      conn.pending = buf;
      return;
    }
    if (buf.length > conn.need) {
      fail(conn, 'protocol'); // no pipelining, so nothing may follow
      return;
    }
    complete(conn);
  };

  const open = (): Promise<Conn> =>
    new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: opts.port, noDelay: true });
      const conn: Conn = { socket, connected: false, inFlight: IDLE, pending: undefined, need: -1, status: 0, closeAfter: false };
      all.add(conn);
      socket.on('connect', () => {
        conn.connected = true;
        free.push(conn);
        resolve(conn);
        pump();
      });
      socket.on('data', (chunk: Buffer) => onData(conn, chunk));
      socket.on('error', (err) => {
        if (!conn.connected) {
          errors.connect++;
          reject(err);
        }
      });
      socket.on('close', () => {
        all.delete(conn);
        const at = free.indexOf(conn);
        if (at >= 0) free.splice(at, 1);
        if (conn.inFlight !== IDLE) fail(conn, 'io');
        if (finished || reconnects >= MAX_RECONNECTS) return;
        reconnects++;
        setTimeout(() => {
          if (!finished) open().catch(() => {}); // counted in errors.connect; the due requests wait meanwhile
        }, RECONNECT_DELAY_MS);
      });
    });

  const done = new Promise<void>((resolve) => (onFinish = resolve));
  // What finish() stops, set as the run gets that far: it may run before either exists.
  const late: { hardStop?: NodeJS.Timeout; ticker?: Worker } = {};
  function finish(): void {
    if (finished) return;
    finished = true;
    clearTimeout(late.hardStop);
    void late.ticker?.terminate();
    for (const conn of all) conn.socket.destroy();
    onFinish();
  }

  const connecting = Promise.all(Array.from({ length: opts.connections }, open));
  const connectTimer = setTimeout(() => finish(), CONNECT_TIMEOUT_MS);
  try {
    await Promise.race([connecting, done]);
  } finally {
    clearTimeout(connectTimer);
  }
  // finish() may have run meanwhile, from a timer or a socket event (which TypeScript's narrowing cannot see).
  if (finished as boolean) throw new Error(`could not open ${opts.connections} connections to 127.0.0.1:${opts.port} within ${CONNECT_TIMEOUT_MS} ms`);

  // One unmeasured request per connection: warms this process's code paths and each connection end to end.
  const primingDone = new Promise<void>((resolve) => (onPrimed = resolve));
  for (const conn of free) {
    conn.inFlight = PRIMING;
    conn.socket.write(request);
  }
  free.length = 0;
  const primeTimer = setTimeout(() => {
    fatal = `priming: ${primed} of ${opts.connections} responses within ${CONNECT_TIMEOUT_MS} ms`;
    finish();
  }, CONNECT_TIMEOUT_MS);
  try {
    await Promise.race([primingDone, done]);
  } finally {
    clearTimeout(primeTimer);
  }
  if (fatal !== undefined) throw new Error(fatal);

  const ticker = new Worker(TICKER, { eval: true });
  late.ticker = ticker;
  ticker.on('message', pump);
  ticker.on('error', (err: unknown) => {
    process.stderr.write(`fixed-rate: ticker failed: ${err instanceof Error ? err.message : String(err)}\n`);
    finish();
  });
  await Promise.race([new Promise<void>((resolve) => ticker.once('online', resolve)), done]);
  if (finished as boolean) throw new Error('the ticker thread did not start');
  // Both clocks read back to back: the offset between performance.now() and hrtime in ms.
  const hrOffset = Number(process.hrtime.bigint()) / 1e6 - performance.now();
  t0 = performance.now() + LEAD_MS;
  ticker.postMessage({ startHr: t0 + hrOffset, intervalMs, count: scheduled });
  late.hardStop = setTimeout(finish, LEAD_MS + opts.durationSec * 1_000 + GRACE_MS);
  const cpu0 = process.cpuUsage();
  await done;
  const cpu = process.cpuUsage(cpu0);
  const elapsedMs = performance.now() - (t0 - LEAD_MS);

  return {
    rate: opts.rate,
    durationSec: opts.durationSec,
    connections: opts.connections,
    scheduled,
    sent,
    completed,
    non2xx3xx,
    errors,
    unfinished: sent - completed - failed,
    unsent: scheduled - sent,
    maxQueued,
    achievedRps: completed > 0 ? completed / ((lastDone - t0) / 1_000) : 0,
    latencyMs: percentiles(latency, completed),
    sendLagMs: percentiles(lag, sent),
    cpuPct: ((cpu.user + cpu.system) / 1_000 / elapsedMs) * 100,
  };
}

run(readOptions()).then(
  (report) => process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0)),
  (err: unknown) => {
    process.stderr.write(`fixed-rate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
