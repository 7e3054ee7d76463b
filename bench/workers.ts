/**
 * The workers scenario (BENCH_SCENARIO=workers): meshd with `workers: 1`
 * against `workers: 2` on this host, both unpinned, wrk with 2 threads. On a
 * 2-core machine the load generator and the backend share the cores with
 * meshd, so 2 workers cannot double the req/s here; what this measures is
 * whether a second worker costs CPU per request (req/s per meshd core and CPU
 * µs per request should stay flat from 1 to 2 workers, which is what makes
 * throughput scale on a host whose load comes from elsewhere), and how evenly
 * SO_REUSEPORT spreads connections (each worker's share of the requests).
 */
import { mkdirSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import {
  cpuModel,
  CpuMeter,
  log,
  measureRounds,
  meshdWarnings,
  otherNote,
  retryNote,
  RETRY_PAUSE_MS,
  writeReport,
  type ScenarioContext,
  type ScenarioOutcome,
} from './common.ts';
import { childPids, freePort, waitReady } from './procs.ts';
import { fmtMiB, median } from './report.ts';
import { meshdConfig, startBackend, startMeshdWithConfig, type Server } from './servers.ts';
import { runWrk, type WrkResult } from './wrk.ts';
import { RssWatch } from './common.ts';

const ROWS = ['direct', 'meshd-1w', 'meshd-2w'] as const;
type Row = (typeof ROWS)[number];
const THREADS = 2;

export function workersBudgetSec(ctx: Pick<ScenarioContext, 'settings'>): number {
  const { settings } = ctx;
  const perRunSec = settings.durationSec + 5 + settings.retryDisturbed * (settings.durationSec + 5 + RETRY_PAUSE_MS / 1_000);
  return ROWS.length * (settings.repeats * perRunSec + settings.warmupSec + 5) + 90;
}

interface Run {
  readonly wrk: WrkResult;
  readonly serverCpuPct: number | undefined;
  readonly otherCpuPct: number | undefined;
}

/** Requests each worker sent upstream so far, from the supervisor's /debug/state. */
async function workerTotals(adminPort: number): Promise<number[]> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/debug/state`);
  const state = (await res.json()) as { workers?: { states: { services: { endpoints: { stats: { total: Record<string, number> } }[] }[] }[] } };
  return (state.workers?.states ?? []).map((w) => Object.values(w.services[0]?.endpoints[0]?.stats.total ?? {}).reduce((a, b) => a + b, 0));
}

export async function runWorkers(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tools, tmp, started, revision } = ctx;
  const backendPort = await freePort();
  const backend = startBackend(tmp, backendPort, undefined);
  await waitReady(backend.proc, backendPort, '/', 5);
  const servers = new Map<Row, Server>([['direct', backend]]);
  const admin = new Map<Row, number>();
  for (const [row, workers] of [
    ['meshd-1w', 1],
    ['meshd-2w', 2],
  ] as const) {
    const dir = join(tmp, row);
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const adminPort = await freePort();
    admin.set(row, adminPort);
    servers.set(row, startMeshdWithConfig(dir, port, meshdConfig(port, adminPort, backendPort, workers), undefined));
  }
  for (const [row, server] of servers) {
    await waitReady(server.proc, server.port, '/', 5);
    log(`${row} ready on 127.0.0.1:${server.port}`);
  }
  // A multi-worker meshd is its supervisor plus the workers it forked.
  const groups = new Map<Row, number[]>();
  for (const [row, server] of servers) groups.set(row, row === 'meshd-2w' ? [server.proc.pid, ...childPids(server.proc.pid)] : [server.proc.pid]);
  const meter = new CpuMeter(groups, undefined);
  const rss = [...groups].filter(([row]) => row !== 'direct').map(([row, pids]) => new RssWatch(row, () => pids));
  const sampler = setInterval(() => rss.forEach((w) => w.sample()), 250);
  try {
    const run = async (row: Row, durationSec: number): Promise<Run> => {
      const server = servers.get(row) as Server;
      const { value, ...cpu } = await meter.measure(row, () =>
        runWrk({ wrk: tools.wrk, port: server.port, path: '/', threads: THREADS, connections: settings.connections, durationSec, cpu: undefined }),
      );
      return { wrk: value, serverCpuPct: cpu.serverCpuPct, otherCpuPct: cpu.otherCpuPct };
    };
    if (settings.warmupSec > 0) for (const row of ROWS) await run(row, settings.warmupSec);
    const before = await workerTotals(admin.get('meshd-2w') as number);
    const { results, discarded } = await measureRounds(
      settings,
      ['small'] as const,
      ROWS,
      (row) => row,
      (row) => run(row, settings.durationSec),
      (row, _size, r) =>
        `${row.padEnd(9)} ${Math.round(r.wrk.requestsPerSec).toString().padStart(7)} req/s  p99 ${r.wrk.p99Ms.toFixed(2)} ms  cpu ${r.serverCpuPct?.toFixed(0) ?? '?'}%${otherNote(r.otherCpuPct)}`,
    );
    const after = await workerTotals(admin.get('meshd-2w') as number);
    clearInterval(sampler);
    rss.forEach((w) => {
      w.sample();
      w.finish();
    });
    const shares = after.map((n, i) => n - (before[i] ?? 0));
    const shareTotal = shares.reduce((a, b) => a + b, 0);

    const lines = [
      '| target | req/s | p50 | p99 | server CPU | req/s per server core | CPU µs / request | vs 1 worker (per core) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
    ];
    const perCore = new Map<Row, number>();
    for (const row of ROWS) {
      const runs = results.get(row) ?? [];
      const rps = median(runs.map((r) => r.wrk.requestsPerSec));
      const cpu = median(runs.flatMap((r) => (r.serverCpuPct === undefined ? [] : [r.serverCpuPct])));
      const core = rps / (cpu / 100);
      perCore.set(row, core);
      const base = perCore.get('meshd-1w');
      lines.push(
        `| ${row} | ${Math.round(rps).toLocaleString('en-US')} | ${median(runs.map((r) => r.wrk.p50Ms)).toFixed(2)} ms | ${median(runs.map((r) => r.wrk.p99Ms)).toFixed(2)} ms | ${cpu.toFixed(0)} % | ` +
          `${Math.round(core).toLocaleString('en-US')} | ${((cpu / 100 / rps) * 1e6).toFixed(1)} | ${row === 'meshd-2w' && base !== undefined ? `${(core / base).toFixed(2)}×` : ''} |`,
      );
    }
    const warnings = meshdWarnings(servers.get('meshd-2w')!.proc);
    const report = [
      `# meshd workers benchmark${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${revision}; node ${process.version}; CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- load: \`wrk -t${THREADS} -c${settings.connections} -d${settings.durationSec}s -H 'Host: bench'\` (GET /, 5-byte body), ${settings.repeats} repeat(s), medians; nothing pinned: wrk, the backend and meshd share the ${availableParallelism()} cores`,
      ...retryNote(settings, discarded),
      `- server CPU: all of that meshd's processes (for 2 workers: the supervisor and both workers), % of one core; req/s per server core = req/s ÷ server CPU`,
      `- requests per worker (2 workers, measured rounds): ${shares.map((n) => `${n.toLocaleString('en-US')} (${shareTotal > 0 ? ((100 * n) / shareTotal).toFixed(1) : '?'} %)`).join(', ')} — SO_REUSEPORT spreads connections by address hash`,
      `- peak RSS: ${rss.map((w) => `${w.name} ${fmtMiB(w.peakKb)}`).join(', ')} (2 workers: supervisor + workers summed)`,
      `- why not "2× req/s": the load generator and backend need CPU on the same 2 cores; the per-core columns show what a second core gives meshd when load comes from elsewhere`,
      '',
      ...lines,
      '',
      ...(warnings.count > 0 ? [`- meshd logged ${warnings.count} warning line(s): ${warnings.samples.join('; ')}`, ''] : []),
    ].join('\n');
    return writeReport('workers', started, settings.quick, report);
  } finally {
    clearInterval(sampler);
  }
}
