/**
 * Summaries of repeated wrk runs (medians, error totals) and the markdown
 * report: a header describing the machine and settings, then one table.
 */
import type { WrkResult } from './wrk.ts';

/** The default (http1) scenario's targets, in table order. */
export const TARGETS = ['direct', 'meshd', 'nginx', 'haproxy'] as const;
/** The minimal forwarding engines of bench/engines.ts (the "engines" scenario). */
export const MINIMAL_ENGINES = ['http-proxy-3', 'node-pipe', 'undici-pool', 'raw-h1'] as const;
export type MinimalEngine = (typeof MINIMAL_ENGINES)[number];
/** The "engines" scenario's targets, in table order. */
export const ENGINE_TARGETS = ['direct', ...MINIMAL_ENGINES, 'meshd', 'nginx'] as const;
export type Target = (typeof TARGETS)[number] | (typeof ENGINE_TARGETS)[number];

export const SIZES = [
  { name: 'small', path: '/', bytes: 5 },
  { name: '16k', path: '/16k', bytes: 16 * 1024 },
] as const;
export type Size = (typeof SIZES)[number];

/** One wrk run plus what the harness measured around it. */
export interface RunResult {
  readonly wrk: WrkResult;
  /** CPU used by the server wrk talked to (the proxy; the backend for "direct"), % of one core. */
  readonly serverCpuPct: number | undefined;
  /** Busy share of the core running backend + wrk (only when pinned), %. */
  readonly loadCorePct: number | undefined;
  /** CPU used during the run by processes outside the benchmark (plus steal), % of one core. */
  readonly otherCpuPct: number | undefined;
}

export interface Summary {
  readonly target: Target;
  readonly size: Size['name'];
  readonly runs: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly serverCpuPct: number;
  readonly loadCorePct: number;
  readonly otherCpuPct: number;
  readonly requests: number;
  readonly non2xx: number;
  readonly socket: { connect: number; read: number; write: number; timeout: number };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const hi = sorted[mid] ?? Number.NaN;
  return sorted.length % 2 === 1 ? hi : ((sorted[mid - 1] ?? Number.NaN) + hi) / 2;
}

const defined = (values: readonly (number | undefined)[]): number[] => values.filter((v): v is number => v !== undefined);

export function summarize(target: Target, size: Size['name'], results: readonly RunResult[]): Summary {
  const runs = results.map((r) => r.wrk);
  const socket = { connect: 0, read: 0, write: 0, timeout: 0 };
  let non2xx = 0;
  let requests = 0;
  for (const r of runs) {
    socket.connect += r.socketErrors.connect;
    socket.read += r.socketErrors.read;
    socket.write += r.socketErrors.write;
    socket.timeout += r.socketErrors.timeout;
    non2xx += r.non2xx3xx;
    requests += r.requests;
  }
  return {
    target,
    size,
    runs: runs.length,
    rps: median(runs.map((r) => r.requestsPerSec)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    serverCpuPct: median(defined(results.map((r) => r.serverCpuPct))),
    loadCorePct: median(defined(results.map((r) => r.loadCorePct))),
    otherCpuPct: median(defined(results.map((r) => r.otherCpuPct))),
    requests,
    non2xx,
    socket,
  };
}

export const socketErrorTotal = (s: Summary): number => s.socket.connect + s.socket.read + s.socket.write + s.socket.timeout;

export function fmtRps(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  return `${ms.toFixed(1)} ms`;
}

export function fmtPct(p: number): string {
  return Number.isFinite(p) ? `${Math.round(p)}%` : 'n/a';
}

export function fmtRatio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '—';
  return `${(a / b).toFixed(2)}×`;
}

function fmtSocket(s: Summary): string {
  const total = socketErrorTotal(s);
  if (total === 0) return '0';
  return `${total} (c${s.socket.connect}/r${s.socket.read}/w${s.socket.write}/t${s.socket.timeout})`;
}

export function table(summaries: readonly Summary[]): string {
  const find = (t: Target, size: string): Summary | undefined => summaries.find((s) => s.target === t && s.size === size);
  const lines = [
    '| target | size | req/s (median) | p50 | p99 | vs direct | meshd/nginx | meshd/haproxy | server CPU | req/s per server core | load core busy | other CPU | non-2xx/3xx | socket errors | requests |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const size of SIZES) {
    for (const target of TARGETS) {
      const s = find(target, size.name);
      if (s === undefined) continue;
      const direct = find('direct', size.name);
      const isMeshd = target === 'meshd';
      lines.push(
        `| ${target} | ${size.name} | ${fmtRps(s.rps)} | ${fmtMs(s.p50Ms)} | ${fmtMs(s.p99Ms)} | ${fmtRatio(s.rps, direct?.rps)} | ` +
          `${isMeshd ? fmtRatio(s.rps, find('nginx', size.name)?.rps) : ''} | ${isMeshd ? fmtRatio(s.rps, find('haproxy', size.name)?.rps) : ''} | ` +
          `${fmtPct(s.serverCpuPct)} | ${fmtRps(s.serverCpuPct > 0 ? s.rps / (s.serverCpuPct / 100) : Number.NaN)} | ${fmtPct(s.loadCorePct)} | ${fmtPct(s.otherCpuPct)} | ${s.non2xx} | ${fmtSocket(s)} | ${s.requests.toLocaleString('en-US')} |`,
      );
    }
  }
  return lines.join('\n');
}

export function fmtMiB(kb: number | undefined): string {
  return kb === undefined ? 'n/a' : `${(kb / 1024).toFixed(1)} MiB`;
}

/** req/s one fully busy core of the server would give: req/s ÷ server CPU (medians of each). */
export function perCore(s: Summary | undefined): number {
  return s !== undefined && s.serverCpuPct > 0 ? s.rps / (s.serverCpuPct / 100) : Number.NaN;
}

/**
 * The "engines" scenario's table: every target of `targets` per size, with
 * req/s and per-core ratios against direct, nginx and http-proxy-3, and each
 * server's RSS before load and at its peak (VmHWM over the whole run).
 */
export interface Memory {
  /** VmRSS once ready, before any load. */
  readonly startKb: number | undefined;
  /** VmHWM at the end of the run. */
  readonly hwmKb: number | undefined;
}

export function enginesTable(summaries: readonly Summary[], targets: readonly Target[], memory: ReadonlyMap<Target, Memory>): string {
  const find = (t: Target, size: string): Summary | undefined => summaries.find((s) => s.target === t && s.size === size);
  const lines = [
    '| engine | size | req/s (median) | p50 | p99 | vs direct | vs nginx | server CPU | req/s per server core | per core vs nginx | per core vs http-proxy-3 | RSS before load | peak RSS (VmHWM) | load core busy | other CPU | non-2xx/3xx | socket errors | requests |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const size of SIZES) {
    for (const target of targets) {
      const s = find(target, size.name);
      if (s === undefined) continue;
      const nginx = target === 'nginx' ? undefined : find('nginx', size.name);
      const hp3 = target === 'http-proxy-3' ? undefined : find('http-proxy-3', size.name);
      const core = perCore(s);
      lines.push(
        `| ${target} | ${size.name} | ${fmtRps(s.rps)} | ${fmtMs(s.p50Ms)} | ${fmtMs(s.p99Ms)} | ` +
          `${target === 'direct' ? '1.00×' : fmtRatio(s.rps, find('direct', size.name)?.rps)} | ${fmtRatio(s.rps, nginx?.rps)} | ` +
          `${fmtPct(s.serverCpuPct)} | ${fmtRps(core)} | ${target === 'direct' ? '' : fmtRatio(core, perCore(nginx))} | ` +
          `${target === 'direct' ? '' : fmtRatio(core, perCore(hp3))} | ${fmtMiB(memory.get(target)?.startKb)} | ${fmtMiB(memory.get(target)?.hwmKb)} | ` +
          `${fmtPct(s.loadCorePct)} | ${fmtPct(s.otherCpuPct)} | ${s.non2xx} | ${fmtSocket(s)} | ${s.requests.toLocaleString('en-US')} |`,
      );
    }
  }
  return lines.join('\n');
}

/** One line per size: the proxies ranked by req/s per server core, each relative to the best. */
export function perCoreRanking(summaries: readonly Summary[], targets: readonly Target[]): string[] {
  const lines: string[] = [];
  for (const size of SIZES) {
    const ranked = targets
      .filter((t) => t !== 'direct')
      .map((t) => ({ t, core: perCore(summaries.find((s) => s.target === t && s.size === size.name)) }))
      .filter((r) => Number.isFinite(r.core))
      .sort((a, b) => b.core - a.core);
    const best = ranked[0];
    if (best === undefined) continue;
    lines.push(`- ${size.name}: ${ranked.map((r, i) => `${r.t} ${fmtRps(r.core)}${i === 0 ? '' : ` (${fmtRatio(r.core, best.core)})`}`).join(' > ')}`);
  }
  return lines;
}

/** One measured load run of the http2 and skewed scenarios, whichever generator (wrk, h2load) produced it. */
export interface LoadRun {
  readonly rps: number;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  /** Socket errors (wrk) or failed/errored/timed-out streams (h2load). */
  readonly errors: number;
  /** Responses with a status outside 2xx/3xx. */
  readonly non2xx: number;
  readonly serverCpuPct: number | undefined;
  readonly loadCorePct: number | undefined;
  readonly otherCpuPct: number | undefined;
}

/** Medians (req/s, percentiles, CPU) and totals (requests, errors, non-2xx) of repeated load runs. */
export interface LoadSummary {
  readonly runs: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly serverCpuPct: number;
  readonly loadCorePct: number;
  readonly otherCpuPct: number;
  readonly requests: number;
  readonly errors: number;
  readonly non2xx: number;
}

export function summarizeLoad(runs: readonly LoadRun[]): LoadSummary {
  return {
    runs: runs.length,
    rps: median(runs.map((r) => r.rps)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p90Ms: median(runs.map((r) => r.p90Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    serverCpuPct: median(defined(runs.map((r) => r.serverCpuPct))),
    loadCorePct: median(defined(runs.map((r) => r.loadCorePct))),
    otherCpuPct: median(defined(runs.map((r) => r.otherCpuPct))),
    requests: runs.reduce((a, r) => a + r.requests, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
    non2xx: runs.reduce((a, r) => a + r.non2xx, 0),
  };
}
