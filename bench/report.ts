/**
 * Summaries of repeated wrk runs (medians, error totals) and the markdown
 * report: a header describing the machine and settings, then one table.
 */
import type { WrkResult } from './wrk.ts';

export const TARGETS = ['direct', 'meshd', 'nginx', 'haproxy'] as const;
export type Target = (typeof TARGETS)[number];

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
    requests,
    non2xx,
    socket,
  };
}

export const socketErrorTotal = (s: Summary): number => s.socket.connect + s.socket.read + s.socket.write + s.socket.timeout;

function fmtRps(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}

function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  return `${ms.toFixed(1)} ms`;
}

function fmtPct(p: number): string {
  return Number.isFinite(p) ? `${Math.round(p)}%` : 'n/a';
}

function fmtRatio(a: number | undefined, b: number | undefined): string {
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
    '| target | size | req/s (median) | p50 | p99 | vs direct | meshd/nginx | meshd/haproxy | server CPU | load core busy | non-2xx/3xx | socket errors | requests |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
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
          `${fmtPct(s.serverCpuPct)} | ${fmtPct(s.loadCorePct)} | ${s.non2xx} | ${fmtSocket(s)} | ${s.requests.toLocaleString('en-US')} |`,
      );
    }
  }
  return lines.join('\n');
}

export function fmtMiB(kb: number | undefined): string {
  return kb === undefined ? 'n/a' : `${(kb / 1024).toFixed(1)} MiB`;
}
