/**
 * Running wrk and reading its report: requests/s, the latency distribution
 * (`--latency`), total requests, socket errors and non-2xx/3xx responses.
 */
import { startProcess, stopProcess, withTimeout } from './procs.ts';

export interface WrkResult {
  readonly requestsPerSec: number;
  readonly requests: number;
  /** Latency percentiles in milliseconds. */
  readonly p50Ms: number;
  readonly p75Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly socketErrors: { readonly connect: number; readonly read: number; readonly write: number; readonly timeout: number };
  readonly non2xx3xx: number;
  readonly raw: string;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** "1.23ms" / "456.78us" / "1.02s" / "2.00m" → milliseconds. */
export function parseDuration(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (match?.[1] === undefined || match[2] === undefined) throw new Error(`unparsable wrk duration "${text}"`);
  return Number(match[1]) * (UNIT_MS[match[2]] ?? Number.NaN);
}

/** Parses wrk 4.x output produced with --latency. Throws when a required line is missing. */
export function parseWrk(raw: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(raw);
  if (rps?.[1] === undefined) throw new Error(`wrk output has no Requests/sec line:\n${raw}`);
  const percentile = (p: number): number => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(raw);
    if (m?.[1] === undefined) throw new Error(`wrk output has no ${p}% latency line (was --latency given?):\n${raw}`);
    return parseDuration(m[1]);
  };
  const total = /^\s+(\d+) requests in /m.exec(raw);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(raw);
  return {
    requestsPerSec: Number(rps[1]),
    requests: Number(total?.[1] ?? Number.NaN),
    p50Ms: percentile(50),
    p75Ms: percentile(75),
    p90Ms: percentile(90),
    p99Ms: percentile(99),
    socketErrors: {
      connect: Number(sock?.[1] ?? 0),
      read: Number(sock?.[2] ?? 0),
      write: Number(sock?.[3] ?? 0),
      timeout: Number(sock?.[4] ?? 0),
    },
    non2xx3xx: Number(non2xx?.[1] ?? 0),
    raw,
  };
}

export interface WrkRun {
  readonly wrk: string;
  readonly port: number;
  readonly path: string;
  readonly threads: number;
  readonly connections: number;
  readonly durationSec: number;
  readonly cpu: number | undefined;
  /** Host header (default `bench`); ignored with `script`, which writes its own headers. */
  readonly host?: string | undefined;
  /** A wrk Lua script and the arguments after `--` it receives in init(args). */
  readonly script?: { readonly path: string; readonly args: readonly string[] } | undefined;
}

export function wrkArgs(run: WrkRun): string[] {
  const common = [`-t${run.threads}`, `-c${run.connections}`, `-d${run.durationSec}s`, '--latency'];
  const url = `http://127.0.0.1:${run.port}${run.path}`;
  if (run.script !== undefined) return [...common, '-s', run.script.path, url, '--', ...run.script.args];
  return [...common, '-H', `Host: ${run.host ?? 'bench'}`, url];
}

/** Runs wrk once; killed (and rejected) if it overruns its duration by 30 s. */
export async function runWrk(run: WrkRun): Promise<WrkResult> {
  const proc = startProcess({ name: 'wrk', command: run.wrk, args: wrkArgs(run), cpu: run.cpu });
  const limitMs = (run.durationSec + 30) * 1_000;
  const outcome = await withTimeout(proc.exited, limitMs);
  if (outcome === 'timeout') {
    await stopProcess(proc, 1_000);
    throw new Error(`wrk did not finish within ${limitMs} ms:\n${proc.output}`);
  }
  if (outcome.code !== 0) throw new Error(`wrk exited with code ${outcome.code} signal ${outcome.signal}:\n${proc.output}`);
  return parseWrk(proc.output);
}
