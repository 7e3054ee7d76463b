/**
 * The skewed scenario: how each balancing algorithm copes with one endpoint
 * ten times slower than its two peers. Three backend processes (two answer
 * after 2 ms, one after 20 ms, see skew-backend.ts) behind ONE meshd with five
 * services on the same three endpoints, one per algorithm, the outlier
 * detector off so the balancer alone decides. Each service gets the same
 * closed-loop load (wrk, fixed connections, a random x-user header per request
 * for ring-hash), one service at a time, repeats interleaved; the backends
 * count what they serve, which gives the share of requests the slow endpoint
 * got. Proxy on CPU 0, backends and wrk on CPU 1. See bench/README.md.
 */
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import {
  BENCH_DIR,
  cpuModel,
  CpuMeter,
  DISTURBED_PCT,
  LOAD_CPU,
  log,
  measureRounds,
  meshdWarnings,
  metricFindings,
  OTHER_CPU_NOTE,
  otherNote,
  PROXY_CPU,
  RETRY_PAUSE_MS,
  reportText,
  writeReport,
  retryNote,
  scrapeMetrics,
  type ScenarioContext,
  type ScenarioOutcome,
} from './common.ts';
import { firstLine, freePort, httpGet, tailOf, waitReady } from './procs.ts';
import { fmtMs, fmtPct, fmtRatio, fmtRps, median, summarizeLoad, type LoadRun } from './report.ts';
import { meshdMultiConfig, startMeshdWithConfig, startSkewBackend, type Server } from './servers.ts';
import { runWrk } from './wrk.ts';

export const ALGORITHMS = ['p2c-ewma', 'least-request', 'round-robin', 'weighted-round-robin', 'ring-hash'] as const;
type Algorithm = (typeof ALGORITHMS)[number];
const FAST_MS = 2;
const SLOW_MS = 20;
/** The three endpoints, in the order of the services' endpoint lists. */
const BACKENDS = [
  { name: 'fast-1', delayMs: FAST_MS },
  { name: 'fast-2', delayMs: FAST_MS },
  { name: 'slow', delayMs: SLOW_MS },
] as const;
const DIRECT = 'direct fast-1';
const THREADS = 1;
const SCRIPT = join(BENCH_DIR, 'skew-load.lua');

interface SkewRun extends LoadRun {
  /** Requests each backend counted during the run, in BACKENDS order. */
  readonly counts: readonly number[];
  /** Measured per-request p95 and p99.9 (ms); p50/p90/p99 of LoadRun are measured the same way (skew-load.lua). */
  readonly p95Ms: number;
  readonly p999Ms: number;
  /** wrk's own p50 and p99 (ms), which include its coordinated-omission correction. */
  readonly wrkP50Ms: number;
  readonly wrkP99Ms: number;
  /** Responses skew-load.lua timed, and those without the echoed timestamp. */
  readonly samples: number;
  readonly unmatched: number;
}

/** A per-request percentile skew-load.lua's done() printed ("BENCH-PERCENTILE 99.9 12345", µs), in ms. */
function scriptPercentile(raw: string, p: string): number {
  const m = new RegExp(`^BENCH-PERCENTILE ${p.replace('.', '\\.')} (-?\\d+)$`, 'm').exec(raw);
  return m?.[1] === undefined || Number(m[1]) < 0 ? Number.NaN : Number(m[1]) / 1_000;
}

/** "BENCH-SAMPLES <timed> <unmatched>" from skew-load.lua's done(). */
function scriptSamples(raw: string): { samples: number; unmatched: number } {
  const m = /^BENCH-SAMPLES (\d+) (\d+)$/m.exec(raw);
  if (m?.[1] === undefined || m[2] === undefined) throw new Error(`wrk output has no BENCH-SAMPLES line (did skew-load.lua's done() run?):\n${raw}`);
  return { samples: Number(m[1]), unmatched: Number(m[2]) };
}

export function skewedBudgetSec(ctx: Pick<ScenarioContext, 'settings'>): number {
  const { settings } = ctx;
  const rows = ALGORITHMS.length + 1;
  const perRunSec = settings.skewDurationSec + 5 + settings.retryDisturbed * (settings.skewDurationSec + 5 + RETRY_PAUSE_MS / 1_000);
  return rows * (settings.repeats * perRunSec + settings.warmupSec + 5) + 60;
}

/** A backend's request count (and reset it to 0 when `reset`), asked of the backend directly. */
async function backendCount(port: number, reset: boolean): Promise<number> {
  const answer = await httpGet(port, `/__count${reset ? '?reset=1' : ''}`, 5_000);
  if (answer.status !== 200) throw new Error(`backend :${port} /__count answered ${answer.status}`);
  return (JSON.parse(answer.body.toString('utf8')) as { count: number }).count;
}

export async function runSkewed(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tools, pinning, proxyCpu, loadCpu, tmp, started, revision } = ctx;

  const backends: Server[] = [];
  for (const b of BACKENDS) backends.push(startSkewBackend(b.name, tmp, await freePort(), b.delayMs, loadCpu));
  const ports = backends.map((b) => b.port);
  const serviceExtra = (algorithm: Algorithm): string[] => [
    `balancer: { algorithm: ${algorithm}${algorithm === 'ring-hash' ? ', hashOn: { header: x-user }' : ''} }`,
    'outlier: { enabled: false }',
  ];
  const adminPort = await freePort();
  const meshdPort = await freePort();
  const meshdYaml = meshdMultiConfig(
    meshdPort,
    adminPort,
    ALGORITHMS.map((a) => ({ name: a, endpointPorts: ports, extra: serviceExtra(a) })),
  );
  const meshd = startMeshdWithConfig(tmp, meshdPort, meshdYaml, proxyCpu);
  for (const b of backends) await waitReady(b.proc, b.port, '/', 5);
  for (const a of ALGORITHMS) await waitReady(meshd.proc, meshdPort, '/', 5, 20_000, { host: a, 'x-user': '1' });
  log(
    `skewed: backends ${backends.map((b, i) => `${b.name} (${BACKENDS[i]?.delayMs} ms) :${b.port}`).join(', ')}; meshd :${meshdPort} (admin :${adminPort}) ready`,
  );

  type Row = { readonly name: string; readonly server: Server; readonly group: string; readonly host: string };
  const rows: Row[] = [
    ...ALGORITHMS.map((a) => ({ name: a, server: meshd, group: 'meshd', host: a })),
    { name: DIRECT, server: backends[0] as Server, group: 'fast-1', host: 'bench' },
  ];
  const groups = new Map<string, number[]>([['meshd', [meshd.proc.pid]]]);
  for (const b of backends) groups.set(b.name, [b.proc.pid]);
  const meter = new CpuMeter(groups, loadCpu);
  const metricsBefore = await scrapeMetrics(adminPort);

  /** Requests in flight when load runs through meshd ended (what wrk abandons on stopping). */
  let meshdInFlightAbandoned = 0;
  const runOnce = async (row: Row, durationSec: number): Promise<SkewRun> => {
    if (row.group === 'meshd') meshdInFlightAbandoned += settings.skewConnections;
    for (const server of [meshd, ...backends]) {
      if (server.proc.exit !== undefined) {
        throw new Error(`${server.name} exited (code ${server.proc.exit.code}, signal ${server.proc.exit.signal}):\n${tailOf(server.proc)}`);
      }
    }
    for (const p of ports) await backendCount(p, true);
    const { value: r, ...cpu } = await meter.measure(row.group, () =>
      runWrk({
        wrk: tools.wrk,
        port: row.server.port,
        path: '/',
        threads: THREADS,
        connections: settings.skewConnections,
        durationSec,
        cpu: loadCpu,
        script: { path: SCRIPT, args: [row.host] },
      }),
    );
    const counts: number[] = [];
    for (const p of ports) counts.push(await backendCount(p, false));
    const s = r.socketErrors;
    return {
      rps: r.requestsPerSec,
      requests: r.requests,
      p50Ms: scriptPercentile(r.raw, '50'),
      p90Ms: scriptPercentile(r.raw, '90'),
      p99Ms: scriptPercentile(r.raw, '99'),
      errors: s.connect + s.read + s.write + s.timeout,
      non2xx: r.non2xx3xx,
      counts,
      p95Ms: scriptPercentile(r.raw, '95'),
      p999Ms: scriptPercentile(r.raw, '99.9'),
      wrkP50Ms: r.p50Ms,
      wrkP99Ms: r.p99Ms,
      ...scriptSamples(r.raw),
      ...cpu,
    };
  };
  const slowShare = (counts: readonly number[]): number => {
    const total = counts.reduce((a, b) => a + b, 0);
    return total > 0 ? (counts[2] ?? 0) / total : Number.NaN;
  };

  if (settings.warmupSec > 0) {
    log(`skewed warm-up: ${settings.warmupSec} s per service`);
    for (const row of rows) await runOnce(row, settings.warmupSec);
  }

  const { results, discarded } = await measureRounds(
    settings,
    [undefined],
    rows,
    (row) => row.name,
    (row) => runOnce(row, settings.skewDurationSec),
    (row, _size, r) =>
      `${row.name.padEnd(20)} ${Math.round(r.rps).toString().padStart(6)} req/s` +
      `  p50 ${r.p50Ms.toFixed(2)} ms  p90 ${r.p90Ms.toFixed(2)} ms  p95 ${r.p95Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  p99.9 ${r.p999Ms.toFixed(2)} ms` +
      `  (wrk p50 ${r.wrkP50Ms.toFixed(2)} p99 ${r.wrkP99Ms.toFixed(2)})  slow ${(slowShare(r.counts) * 100).toFixed(1)}% (${r.counts.join('/')})  cpu ${r.serverCpuPct?.toFixed(0) ?? '?'}%` +
      `${r.loadCorePct !== undefined ? ` load-core ${r.loadCorePct.toFixed(0)}%` : ''}${otherNote(r.otherCpuPct)}` +
      `${r.non2xx > 0 ? `  non-2xx ${r.non2xx}` : ''}${r.errors > 0 ? `  errors ${r.errors}` : ''}`,
  );
  const metricsAfter = await scrapeMetrics(adminPort);

  const roundRobin = summarizeLoad(results.get('round-robin') ?? []);
  const lines = [
    '| algorithm | req/s (median) | p50 | p90 | p95 | p99 | p99.9 | p90 vs round-robin | p99 vs round-robin | slow endpoint share (median) | fast-1 / fast-2 / slow (all runs) | wrk p50 / p99 (CO-corrected) | meshd CPU | load core busy | other CPU | non-2xx/3xx | socket errors | requests |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const problems: string[] = [];
  for (const row of rows) {
    const runs = results.get(row.name) ?? [];
    const s = summarizeLoad(runs);
    const totals = BACKENDS.map((_, i) => runs.reduce((a, r) => a + (r.counts[i] ?? 0), 0));
    const all = totals.reduce((a, b) => a + b, 0);
    const split = all > 0 ? totals.map((t) => `${((t / all) * 100).toFixed(1)}%`).join(' / ') : 'n/a';
    const isDirect = row.name === DIRECT;
    lines.push(
      `| ${row.name} | ${fmtRps(s.rps)} | ${fmtMs(s.p50Ms)} | ${fmtMs(s.p90Ms)} | ${fmtMs(median(runs.map((r) => r.p95Ms)))} | ${fmtMs(s.p99Ms)} | ` +
        `${fmtMs(median(runs.map((r) => r.p999Ms)))} | ${isDirect ? '' : fmtRatio(s.p90Ms, roundRobin.p90Ms)} | ${isDirect ? '' : fmtRatio(s.p99Ms, roundRobin.p99Ms)} | ` +
        `${isDirect ? '—' : fmtPct(median(runs.map((r) => slowShare(r.counts) * 100)))} | ${split} | ` +
        `${fmtMs(median(runs.map((r) => r.wrkP50Ms)))} / ${fmtMs(median(runs.map((r) => r.wrkP99Ms)))} | ` +
        `${isDirect ? '' : fmtPct(s.serverCpuPct)} | ${fmtPct(s.loadCorePct)} | ${fmtPct(s.otherCpuPct)} | ${s.non2xx} | ${s.errors} | ${s.requests.toLocaleString('en-US')} |`,
    );
    if (s.non2xx > 0 || s.errors > 0)
      problems.push(`- ${row.name}: ${s.non2xx} non-2xx/3xx responses, ${s.errors} socket errors out of ${s.requests} requests`);
    const unmatched = runs.reduce((a, r) => a + r.unmatched, 0);
    const timed = runs.reduce((a, r) => a + r.samples, 0);
    if (unmatched > 0 || timed < s.requests) {
      problems.push(
        `- ${row.name}: the script timed ${timed} of ${s.requests} responses (${unmatched} without the echoed x-bench-start); its percentiles cover only those`,
      );
    }
    if (s.otherCpuPct > DISTURBED_PCT)
      problems.push(`- ${row.name}: other processes used a median ${Math.round(s.otherCpuPct)}% of a core during its runs; its numbers are disturbed`);
  }
  const warnings = meshdWarnings(meshd.proc);
  if (warnings.count > 0) problems.push(`- meshd logged ${warnings.count} line(s) at warn or above: ${warnings.samples.join('; ')}`);
  const loadFailures = [...results.values()].flat().reduce((a, r) => a + r.errors + r.non2xx, 0);
  const findings = metricFindings(metricsBefore, metricsAfter, meshdInFlightAbandoned, loadFailures);
  problems.push(...findings.problems);

  const wrkCmd = `wrk -t${THREADS} -c${settings.skewConnections} -d${settings.skewDurationSec}s --latency -s bench/skew-load.lua http://127.0.0.1:PORT/ -- SERVICE`;
  const header = [
    `# meshd balancing under latency skew${settings.quick ? ' (quick mode)' : ''}`,
    '',
    `- date: ${started.toISOString()}`,
    `- meshd: ${revision}, 1 process, log level warn; five services on the same three endpoints, one per algorithm ` +
      `(\`balancer: { algorithm: ALGO }\`; ring-hash with \`hashOn: { header: x-user }\`), \`outlier: { enabled: false }\` on each so the balancer alone decides; ` +
      `other settings at their defaults (no slow start, no zones, equal weights — so weighted-round-robin is plain round-robin here, retries on 502/503/504 only)`,
    `- backends: three node:http processes (bench/skew-backend.ts), fast-1 and fast-2 answer after ${FAST_MS} ms, slow after ${SLOW_MS} ms (setTimeout; ` +
      `timer granularity adds ~1 ms), 5-byte body; each counts the requests it gets (reset before every run, read after it)`,
    `- node: ${process.version}; CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
    `- load: \`${wrkCmd}\` (closed loop, ${settings.skewConnections} requests in flight; the script sends Host: SERVICE, a random x-user in 1..1,000,000 and a timestamp the backends echo, per request), ` +
      `one service at a time, ${settings.repeats} repeat(s) (medians shown), ${settings.warmupSec} s warm-up per service, services interleaved each round (order rotated); ` +
      `a fixed-rate load would need wrk2, which Debian does not package, so req/s here also shows what the algorithm costs a closed-loop caller`,
    ...retryNote(settings, discarded),
    `- pinning: ${pinning.enabled ? `meshd on CPU ${PROXY_CPU}; the three backends and wrk on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`,
    `- "${DIRECT}": the same load straight to one fast backend (no meshd): the latency floor`,
    `- slow endpoint share: the slow backend's count ÷ all three backends' counts per run (median over runs); fast-1 / fast-2 / slow: each backend's share of all requests over all runs. ` +
      `Round-robin gives the slow endpoint 1/3; an algorithm that tracks latency or outstanding requests should give it much less`,
    `- percentiles (p50 … p99.9): measured per request by the wrk script (monotonic timestamp sent in x-bench-start, echoed by the backend, timed in response()), medians over runs. ` +
      `wrk's own percentiles (last latency column, for reference) are not the measured distribution: wrk 4.x adds synthetic samples below every latency above twice the mean per-connection interval ` +
      `(its coordinated-omission correction), which with a 10× slower endpoint lifts p50 from the fast endpoints' ~3 ms to anywhere between ~4 and ~11 ms from run to run. ` +
      `p90/p99 vs round-robin: ratios of those latencies (below 1× is better). Any algorithm that still sends ≥ 1% of requests to the slow endpoint has a p99 near its ${SLOW_MS} ms, ` +
      `so p90/p95 show the differences; meshd CPU is % of one core; non-2xx/3xx, socket errors and requests are totals over all runs`,
    `- references: ${firstLine(tools.wrk, ['-v'])}`,
    OTHER_CPU_NOTE,
  ];
  const report = reportText(header, lines, problems, findings.notes);
  return writeReport('skewed', started, settings.quick, report);
}
