/**
 * HTTP/2 load for the http2 scenario: running h2load (nghttp2-client) over
 * h2c with prior knowledge, reading its summary and computing latency
 * percentiles from its per-request log (`--log-file`), plus an h2c readiness
 * probe (node:http2) for servers that speak only HTTP/2 on their port.
 */
import { readFileSync, rmSync } from 'node:fs';
import { connect, constants } from 'node:http2';
import { sleep, startProcess, stopProcess, tailOf, withTimeout, type Proc } from './procs.ts';

export interface H2loadResult {
  readonly requestsPerSec: number;
  /** Requests h2load completed (its "done" count). */
  readonly requests: number;
  readonly succeeded: number;
  /** Streams that failed, errored or timed out (h2load's failed + errored + timeout, and log rows with status -1). */
  readonly failed: number;
  /** Responses with a 4xx or 5xx status. */
  readonly non2xx3xx: number;
  /** Latency percentiles (milliseconds) from the per-request log: time from request start to the end of the response. */
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly raw: string;
}

export interface H2loadRun {
  readonly h2load: string;
  readonly port: number;
  readonly path: string;
  /** `:authority` sent (meshd routes by it; the service name). */
  readonly authority: string;
  readonly clients: number;
  /** Concurrent streams per connection (`-m`). */
  readonly streams: number;
  readonly threads: number;
  readonly durationSec: number;
  readonly cpu: number | undefined;
  /** Where h2load writes its per-request log (deleted after parsing). */
  readonly logFile: string;
}

export function h2loadArgs(run: H2loadRun): string[] {
  return [
    `--clients=${run.clients}`,
    `--max-concurrent-streams=${run.streams}`,
    `--threads=${run.threads}`,
    `--duration=${run.durationSec}`,
    '--header',
    `:authority: ${run.authority}`,
    `--log-file=${run.logFile}`,
    `http://127.0.0.1:${run.port}${run.path}`,
  ];
}

/** The p-th percentile (0–100, nearest rank) of ascending `sorted`. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}

/** Per-request rows of h2load's --log-file: start (µs since epoch) TAB status (-1: failed) TAB duration (µs). */
export function parseH2loadLog(text: string): { durationsMs: Float64Array; failed: number } {
  const lines = text.split('\n');
  const durations = new Float64Array(lines.length);
  let n = 0;
  let failed = 0;
  for (const line of lines) {
    if (line === '') continue;
    const first = line.indexOf('\t');
    const second = line.indexOf('\t', first + 1);
    if (first < 0 || second < 0) continue;
    const status = Number(line.slice(first + 1, second));
    if (status < 0) {
      failed++;
      continue;
    }
    durations[n++] = Number(line.slice(second + 1)) / 1_000;
  }
  return { durationsMs: durations.subarray(0, n).sort(), failed };
}

/** Parses h2load's summary (nghttp2 1.5x) and the per-request log. Throws when a required line is missing. */
export function parseH2load(raw: string, logText: string): H2loadResult {
  const finished = /^finished in [^,]+, ([\d.]+) req\/s/m.exec(raw);
  if (finished?.[1] === undefined) throw new Error(`h2load output has no "finished in" line:\n${raw}`);
  const req = /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m.exec(raw);
  if (req === null) throw new Error(`h2load output has no "requests:" line:\n${raw}`);
  const codes = /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m.exec(raw);
  const log = parseH2loadLog(logText);
  const sorted = log.durationsMs;
  return {
    requestsPerSec: Number(finished[1]),
    requests: Number(req[3]),
    succeeded: Number(req[4]),
    failed: Math.max(Number(req[5]) + Number(req[6]) + Number(req[7]), log.failed),
    non2xx3xx: Number(codes?.[3] ?? 0) + Number(codes?.[4] ?? 0),
    p50Ms: percentile(sorted, 50),
    p90Ms: percentile(sorted, 90),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length > 0 ? (sorted[sorted.length - 1] ?? Number.NaN) : Number.NaN,
    raw,
  };
}

/** Runs h2load once for `durationSec` (timing-based); killed (and rejected) if it overruns by 30 s. */
export async function runH2load(run: H2loadRun): Promise<H2loadResult> {
  rmSync(run.logFile, { force: true });
  const proc = startProcess({ name: 'h2load', command: run.h2load, args: h2loadArgs(run), cpu: run.cpu });
  const limitMs = (run.durationSec + 30) * 1_000;
  const outcome = await withTimeout(proc.exited, limitMs);
  if (outcome === 'timeout') {
    await stopProcess(proc, 1_000);
    throw new Error(`h2load did not finish within ${limitMs} ms:\n${proc.output}`);
  }
  if (outcome.code !== 0) throw new Error(`h2load exited with code ${outcome.code} signal ${outcome.signal}:\n${proc.output}`);
  let logText: string;
  try {
    logText = readFileSync(run.logFile, 'utf8');
  } finally {
    rmSync(run.logFile, { force: true });
  }
  return parseH2load(proc.output, logText);
}

/** One GET over a fresh h2c (prior knowledge) session to 127.0.0.1:port, bounded by `timeoutMs`. */
export function h2Get(port: number, path: string, authority: string, timeoutMs: number): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    };
    session.on('error', fail);
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'GET',
      [constants.HTTP2_HEADER_PATH]: path,
      [constants.HTTP2_HEADER_AUTHORITY]: authority,
    });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on('response', (headers) => (status = Number(headers[constants.HTTP2_HEADER_STATUS] ?? 0)));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', fail);
    stream.on('end', () => {
      clearTimeout(timer);
      session.close();
      resolve({ status, body: Buffer.concat(chunks) });
    });
    stream.end();
  });
}

/** Like procs.ts waitReady, over h2c: polls until GET `path` answers 200 with `expectLength` bytes. */
export async function waitReadyH2(proc: Proc, port: number, path: string, authority: string, expectLength: number, deadlineMs = 20_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  let last = 'no attempt';
  while (Date.now() < until) {
    if (proc.exit !== undefined) {
      throw new Error(`${proc.name} exited (code ${proc.exit.code}, signal ${proc.exit.signal}) before it was ready:\n${tailOf(proc)}`);
    }
    try {
      const answer = await h2Get(port, path, authority, 1_000);
      if (answer.status === 200 && answer.body.length === expectLength) return;
      last = `status ${answer.status}, ${answer.body.length} bytes: ${answer.body.subarray(0, 200).toString()}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${proc.name} not ready over h2c on 127.0.0.1:${port}${path} within ${deadlineMs} ms (last: ${last}):\n${tailOf(proc)}`);
}
