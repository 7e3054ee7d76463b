/**
 * The tracing scenario: what OpenTelemetry tracing costs meshd per request
 * on the HTTP/1.1 path. Three meshd processes in front of the same backend,
 * the same service `bench` in each:
 *
 * - `meshd tracing off`: the http1 scenario's config;
 * - `meshd tracing 1%`, `meshd tracing 100%`: the same plus
 *   `tracing: { enabled: true, sampleRatio: 0.01 | 1, endpoint: … }`,
 *   exporting over OTLP/HTTP (JSON) to a sink this scenario starts.
 *
 * The sink is this file run as `node bench/tracing.ts --sink PORT`: a
 * node:http server that reads each POST whole, counts the spans in it
 * (resourceSpans[].scopeSpans[].spans) and answers 200 `{}`; GET /count
 * gives its totals. It runs on the load CPU with the backend and wrk.
 *
 * meshd's CPU per request is counted from the start of a wrk run until the
 * export queue's schedule delay (OTEL_BSP_SCHEDULE_DELAY, 5 s) and a second
 * more have passed after it, so the spans still queued when wrk stops are
 * exported, and paid for, inside the run that made them; every meshd row
 * gets the same window. Same pinning, warm-up, repeats and interleaving as
 * http1, small body only; "vs off" compares medians, "added" is traced − off
 * in the same round, median over rounds. See bench/README.md.
 */
import { mkdirSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import {
  CLOCK_TICKS_PER_SEC,
  cpuModel,
  CpuMeter,
  DISTURBED_PCT,
  LOAD_CPU,
  log,
  measureRounds,
  meshdWarnings,
  metricFindings,
  metricSum,
  OTHER_CPU_NOTE,
  otherNote,
  PROXY_CPU,
  RETRY_PAUSE_MS,
  reportText,
  retryNote,
  RssWatch,
  scrapeMetrics,
  writeReport,
  type MetricSamples,
  type ScenarioContext,
  type ScenarioOutcome,
} from './common.ts';
import { firstLine, freePort, httpGet, sleep, startProcess, tailOf, waitReady } from './procs.ts';
import { fmtMiB, fmtMs, fmtPct, fmtRatio, fmtRps, median } from './report.ts';
import { meshdConfig, startBackend, startMeshdWithConfig, type Server } from './servers.ts';
import { runWrk, type WrkResult } from './wrk.ts';

const ROWS = ['direct', 'meshd tracing off', 'meshd tracing 1%', 'meshd tracing 100%'] as const;
type Row = (typeof ROWS)[number];
type MeshdRow = Exclude<Row, 'direct'>;
type TracedRow = Exclude<MeshdRow, 'meshd tracing off'>;
const MESHD_ROWS: readonly MeshdRow[] = ['meshd tracing off', 'meshd tracing 1%', 'meshd tracing 100%'];
const TRACED_ROWS: readonly TracedRow[] = ['meshd tracing 1%', 'meshd tracing 100%'];
const SAMPLE_RATIO: Readonly<Record<TracedRow, number>> = { 'meshd tracing 1%': 0.01, 'meshd tracing 100%': 1 };
const OFF = 'meshd tracing off' satisfies MeshdRow;

const THREADS = 1;
const SERVICE = 'bench';
const SELF = fileURLToPath(import.meta.url);
const SINK_FLAG = '--sink';
const SPANS_METRIC = 'meshd_tracing_spans_total';
const SPAN_RESULTS = ['exported', 'dropped', 'failed'] as const;
type SpanResult = (typeof SPAN_RESULTS)[number];

/** OpenTelemetry's batch span processor default for OTEL_BSP_SCHEDULE_DELAY, as meshd applies it (src/tracing/settings.ts). */
const DEFAULT_SCHEDULE_DELAY_MS = 5_000;

/** The export queue's schedule delay meshd will run with: OTEL_BSP_SCHEDULE_DELAY when set and positive (meshd inherits this environment). */
function scheduleDelayMs(): number {
  const text = process.env['OTEL_BSP_SCHEDULE_DELAY'];
  const n = text === undefined || text.trim() === '' ? Number.NaN : Number(text);
  return Number.isFinite(n) && n > 0 ? n : DEFAULT_SCHEDULE_DELAY_MS;
}

/** After each run through meshd: long enough for the queue's timer to fire and its last export to finish. */
const settleMs = (): number => scheduleDelayMs() + 1_000;

/** Seconds this scenario may take at most with these settings (for the run's time budget). */
export function tracingBudgetSec(ctx: Pick<ScenarioContext, 'settings'>): number {
  const { settings } = ctx;
  const settleSec = settleMs() / 1_000;
  const perRunSec = settings.durationSec + settleSec + 5 + settings.retryDisturbed * (settings.durationSec + settleSec + 5 + RETRY_PAUSE_MS / 1_000);
  return ROWS.length * (settings.repeats * perRunSec + settings.warmupSec + settleSec + 5) + 60;
}

/** The sink's totals since it started. */
interface SinkTotals {
  readonly posts: number;
  readonly spans: number;
  readonly bytes: number;
  /** POSTs it could not read as OTLP/JSON (answered 400 or 415). */
  readonly rejected: number;
}

/** What reached the sink and what meshd's exporter counted during one run and its settle time. */
interface ExportWindow {
  readonly sink: SinkTotals;
  readonly meshd: Readonly<Record<SpanResult, number>>;
}

interface Run {
  readonly wrk: WrkResult;
  /** CPU of the server wrk talked to (the backend for direct) while wrk ran, % of one core. */
  readonly serverCpuPct: number | undefined;
  /** meshd's CPU time over the run and its settle time ÷ the requests wrk completed, µs (meshd rows). */
  readonly cpuUsPerRequest: number | undefined;
  /** meshd's CPU time in the settle time after wrk stopped, ms (the last exports, and what an idle meshd spends). */
  readonly settleCpuMs: number | undefined;
  readonly loadCorePct: number | undefined;
  readonly otherCpuPct: number | undefined;
  readonly exports: ExportWindow;
}

const socketErrors = (r: WrkResult): number => r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
const finite = (values: readonly (number | undefined)[]): number[] => values.filter((v): v is number => v !== undefined && Number.isFinite(v));
const range = (values: readonly number[], fmt: (v: number) => string): string =>
  values.length === 0 ? 'n/a' : `${fmt(Math.min(...values))} – ${fmt(Math.max(...values))}`;
const us = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');
const signedUs = (v: number): string => (Number.isFinite(v) ? `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(1)}` : 'n/a');
const count = (n: number): string => n.toLocaleString('en-US');
/** "  spans: sink …, exported …" for a run's log line when it exported anything. */
const spanNote = (e: ExportWindow): string =>
  e.sink.spans > 0 || e.meshd.exported + e.meshd.dropped + e.meshd.failed > 0
    ? `  spans: sink ${e.sink.spans}, exported ${e.meshd.exported}, dropped ${e.meshd.dropped}, failed ${e.meshd.failed}`
    : '';

/** Spans in one OTLP/JSON ExportTraceServiceRequest: resourceSpans[].scopeSpans[].spans. */
function countSpans(payload: unknown): number {
  const list = (value: unknown, key: string): unknown[] => {
    if (typeof value !== 'object' || value === null) return [];
    const field = (value as Record<string, unknown>)[key];
    return Array.isArray(field) ? field : [];
  };
  let spans = 0;
  for (const resource of list(payload, 'resourceSpans')) for (const scope of list(resource, 'scopeSpans')) spans += list(scope, 'spans').length;
  return spans;
}

/** The sink process: an OTLP/HTTP (JSON) receiver that only counts. */
function serveSink(port: number): void {
  const totals = { posts: 0, spans: 0, bytes: 0, rejected: 0 };
  const answer = (res: ServerResponse, status: number, body: string, type = 'application/json'): void => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const server = createServer({ keepAlive: true, noDelay: true, keepAliveTimeout: 120_000, requestTimeout: 0 }, (req, res) => {
    if (req.method === 'GET') {
      if (req.url === '/count') answer(res, 200, JSON.stringify(totals));
      else answer(res, 200, 'ok', 'text/plain');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      totals.bytes += raw.length;
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
        totals.rejected++;
        answer(res, 415, JSON.stringify({ error: 'OTLP/JSON only' }));
        return;
      }
      try {
        const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
        const spans = countSpans(JSON.parse(body.toString('utf8')));
        totals.posts++;
        totals.spans += spans;
        answer(res, 200, '{}');
      } catch (err) {
        totals.rejected++;
        answer(res, 400, JSON.stringify({ error: (err as Error).message }));
      }
    });
  });
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 130_000;
  server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`));
  const stop = (): void => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function sinkTotals(port: number): Promise<SinkTotals> {
  const answer = await httpGet(port, '/count', 5_000, { host: '127.0.0.1' });
  if (answer.status !== 200) throw new Error(`OTLP sink answered ${answer.status} to GET /count`);
  return JSON.parse(answer.body.toString('utf8')) as SinkTotals;
}

const spanCounts = (samples: MetricSamples | undefined): Record<SpanResult, number> => ({
  exported: metricSum(samples, SPANS_METRIC, ['result="exported"']),
  dropped: metricSum(samples, SPANS_METRIC, ['result="dropped"']),
  failed: metricSum(samples, SPANS_METRIC, ['result="failed"']),
});

const tracingLine = (ratio: number, sinkPort: number): string =>
  `tracing: { enabled: true, sampleRatio: ${ratio}, endpoint: http://127.0.0.1:${sinkPort}/v1/traces }`;

export async function runTracing(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tools, pinning, proxyCpu, loadCpu, tmp, started, revision } = ctx;
  const settle = settleMs();
  const backendPort = await freePort();
  const backend = startBackend(tmp, backendPort, loadCpu);
  const sinkPort = await freePort();
  const sinkProc = startProcess({
    name: 'otlp-sink',
    command: process.execPath,
    args: [SELF, SINK_FLAG, String(sinkPort)],
    cpu: loadCpu,
    logFile: join(tmp, 'otlp-sink.log'),
  });
  await waitReady(backend.proc, backendPort, '/', 5);
  await waitReady(sinkProc, sinkPort, '/', 2);

  const servers = new Map<Row, Server>([['direct', backend]]);
  const admin = new Map<MeshdRow, number>();
  for (const row of MESHD_ROWS) {
    const dir = join(tmp, row.replace(/[ %]+/g, '-'));
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const port = await freePort();
    const adminPort = await freePort();
    admin.set(row, adminPort);
    const base = meshdConfig(port, adminPort, backendPort);
    const yaml = row === OFF ? base : `${base.trimEnd()}\n${tracingLine(SAMPLE_RATIO[row], sinkPort)}\n`;
    servers.set(row, startMeshdWithConfig(dir, port, yaml, proxyCpu));
  }
  for (const [row, server] of servers) {
    await waitReady(server.proc, server.port, '/', 5);
    log(`${row} ready on 127.0.0.1:${server.port} (pid ${server.proc.pid})`);
  }
  log(`OTLP sink ready on 127.0.0.1:${sinkPort} (pid ${sinkProc.pid}); settle time after each run through meshd: ${settle / 1_000} s`);

  // The sink is ours too: its CPU is not "other".
  const groups = new Map<string, number[]>([['otlp-sink', [sinkProc.pid]]]);
  for (const [row, server] of servers) groups.set(row, [server.proc.pid]);
  const meter = new CpuMeter(groups, loadCpu);
  const watches = MESHD_ROWS.map((row) => new RssWatch(row, () => groups.get(row) ?? []));
  for (const w of watches) w.sample();
  const sampler = setInterval(() => {
    for (const w of watches) w.sample();
  }, 250);
  const metricsBefore = new Map<MeshdRow, MetricSamples | undefined>();
  for (const row of MESHD_ROWS) metricsBefore.set(row, await scrapeMetrics(admin.get(row) as number));

  try {
    /** Requests wrk had in flight when its runs through each meshd ended (warm-ups included). */
    const abandoned = new Map<MeshdRow, number>(MESHD_ROWS.map((r) => [r, 0]));
    const wrkRun = async (row: Row, durationSec: number): Promise<Run> => {
      const server = servers.get(row) as Server;
      for (const s of [backend, { name: 'otlp-sink', proc: sinkProc }, server]) {
        if (s.proc.exit !== undefined) throw new Error(`${s.name} exited (code ${s.proc.exit.code}, signal ${s.proc.exit.signal}):\n${tailOf(s.proc)}`);
      }
      const isMeshd = row !== 'direct';
      // Scrapes cost meshd CPU: they happen outside the counted window.
      const counts0 = isMeshd ? spanCounts(await scrapeMetrics(admin.get(row) as number)) : undefined;
      const sink0 = await sinkTotals(sinkPort);
      const ticks0 = meter.groupTicks(row);
      const { value: wrk, ...cpu } = await meter.measure(row, () =>
        runWrk({ wrk: tools.wrk, port: server.port, path: '/', threads: THREADS, connections: settings.connections, durationSec, cpu: loadCpu }),
      );
      const ticksEnd = meter.groupTicks(row);
      if (isMeshd) await sleep(settle);
      const ticks1 = meter.groupTicks(row);
      const sink1 = await sinkTotals(sinkPort);
      const counts1 = isMeshd ? spanCounts(await scrapeMetrics(admin.get(row) as number)) : undefined;
      if (isMeshd) abandoned.set(row, (abandoned.get(row) ?? 0) + settings.connections);
      const cpuUsPerRequest =
        !isMeshd || ticks0 === undefined || ticks1 === undefined || !(wrk.requests > 0)
          ? undefined
          : ((ticks1 - ticks0) / CLOCK_TICKS_PER_SEC / wrk.requests) * 1e6;
      const meshdDelta = (r: SpanResult): number => (counts0 === undefined || counts1 === undefined ? 0 : counts1[r] - counts0[r]);
      const exports: ExportWindow = {
        sink: {
          posts: sink1.posts - sink0.posts,
          spans: sink1.spans - sink0.spans,
          bytes: sink1.bytes - sink0.bytes,
          rejected: sink1.rejected - sink0.rejected,
        },
        meshd: { exported: meshdDelta('exported'), dropped: meshdDelta('dropped'), failed: meshdDelta('failed') },
      };
      const settleCpuMs = !isMeshd || ticksEnd === undefined || ticks1 === undefined ? undefined : ((ticks1 - ticksEnd) / CLOCK_TICKS_PER_SEC) * 1_000;
      return { wrk, cpuUsPerRequest, settleCpuMs, exports, ...cpu };
    };

    if (settings.warmupSec > 0) {
      log(`warm-up: ${settings.warmupSec} s per target`);
      for (const row of ROWS) await wrkRun(row, settings.warmupSec);
    }
    const { results, discarded } = await measureRounds(
      settings,
      [undefined],
      ROWS,
      (row) => row,
      (row) => wrkRun(row, settings.durationSec),
      (row, _size, r) =>
        `${row.padEnd(18)} ${Math.round(r.wrk.requestsPerSec).toString().padStart(7)} req/s  p50 ${r.wrk.p50Ms.toFixed(3)} ms  p99 ${r.wrk.p99Ms.toFixed(3)} ms` +
        `  cpu ${r.serverCpuPct?.toFixed(0) ?? '?'}%${r.cpuUsPerRequest !== undefined ? ` ${r.cpuUsPerRequest.toFixed(1)} µs/request` : ''}` +
        `${r.loadCorePct !== undefined ? ` load-core ${r.loadCorePct.toFixed(0)}%` : ''}${otherNote(r.otherCpuPct)}` +
        spanNote(r.exports) +
        `${r.wrk.non2xx3xx > 0 ? `  non-2xx ${r.wrk.non2xx3xx}` : ''}${socketErrors(r.wrk) > 0 ? `  socket errors ${socketErrors(r.wrk)}` : ''}`,
    );
    clearInterval(sampler);
    for (const w of watches) {
      w.sample();
      w.finish();
    }
    const metricsAfter = new Map<MeshdRow, MetricSamples | undefined>();
    for (const row of MESHD_ROWS) metricsAfter.set(row, await scrapeMetrics(admin.get(row) as number));
    const sinkEnd = await sinkTotals(sinkPort);

    const runsOf = (row: Row): Run[] => results.get(row) ?? [];
    const med = (row: Row, pick: (r: Run) => number | undefined): number => median(finite(runsOf(row).map(pick)));
    const rps = (row: Row): number => med(row, (r) => r.wrk.requestsPerSec);
    const cpuUs = (row: Row): number => med(row, (r) => r.cpuUsPerRequest);
    /** A traced row against tracing off, round by round (measureRounds keeps one run per row and round). */
    const paired = (row: TracedRow, combine: (traced: Run, off: Run) => number | undefined): number[] => {
      const off = runsOf(OFF);
      return finite(
        runsOf(row).map((r, round) => {
          const o = off[round];
          return o === undefined ? undefined : combine(r, o);
        }),
      );
    };
    const addedUs = (row: TracedRow): number[] =>
      paired(row, (a, b) => (a.cpuUsPerRequest === undefined || b.cpuUsPerRequest === undefined ? undefined : a.cpuUsPerRequest - b.cpuUsPerRequest));
    const cpuRatios = (row: TracedRow): number[] =>
      paired(row, (a, b) => (a.cpuUsPerRequest === undefined || b.cpuUsPerRequest === undefined ? undefined : a.cpuUsPerRequest / b.cpuUsPerRequest));
    const rpsRatios = (row: TracedRow): number[] => paired(row, (a, b) => a.wrk.requestsPerSec / b.wrk.requestsPerSec);
    const isTraced = (row: Row): row is TracedRow => (TRACED_ROWS as readonly Row[]).includes(row);
    const sum = (row: Row, pick: (r: Run) => number): number => runsOf(row).reduce((n, r) => n + pick(r), 0);

    const lines = [
      '| target | req/s | p50 | p99 | vs direct | server CPU | meshd CPU µs/request | CPU per request vs off | added µs/request | load core busy | other CPU | non-2xx/3xx | socket errors | requests |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const row of ROWS) {
      const traced = isTraced(row);
      lines.push(
        `| ${row} | ${fmtRps(rps(row))} | ${fmtMs(med(row, (r) => r.wrk.p50Ms))} | ${fmtMs(med(row, (r) => r.wrk.p99Ms))} | ${fmtRatio(rps(row), rps('direct'))} | ` +
          `${fmtPct(med(row, (r) => r.serverCpuPct))} | ${row === 'direct' ? '—' : us(cpuUs(row))} | ` +
          `${traced ? fmtRatio(cpuUs(row), cpuUs(OFF)) : ''} | ${traced ? signedUs(median(addedUs(row))) : ''} | ` +
          `${fmtPct(med(row, (r) => r.loadCorePct))} | ${fmtPct(med(row, (r) => r.otherCpuPct))} | ` +
          `${sum(row, (r) => r.wrk.non2xx3xx)} | ${sum(row, (r) => socketErrors(r.wrk))} | ${count(sum(row, (r) => r.wrk.requests))} |`,
      );
    }

    const exportLines = [
      '## Export',
      '',
      '| target | sampleRatio | requests (wrk) | spans received by the sink | spans / request | POSTs | KiB received | meshd exported | meshd dropped | meshd failed | meshd CPU in the settle time |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const row of MESHD_ROWS) {
      const requests = sum(row, (r) => r.wrk.requests);
      const spans = sum(row, (r) => r.exports.sink.spans);
      exportLines.push(
        `| ${row} | ${isTraced(row) ? SAMPLE_RATIO[row] : '—'} | ${count(requests)} | ${count(spans)} | ${requests > 0 ? (spans / requests).toFixed(4) : 'n/a'} | ` +
          `${count(sum(row, (r) => r.exports.sink.posts))} | ${count(Math.round(sum(row, (r) => r.exports.sink.bytes) / 1024))} | ` +
          `${SPAN_RESULTS.map((k) => count(sum(row, (r) => r.exports.meshd[k]))).join(' | ')} | ${med(row, (r) => r.settleCpuMs).toFixed(0)} ms |`,
      );
    }
    const wholeRun = TRACED_ROWS.map((row) => {
      const c = spanCounts(metricsAfter.get(row));
      return `${row} ${SPAN_RESULTS.map((k) => `${count(c[k])} ${k}`).join(', ')}`;
    });
    exportLines.push(
      '',
      `- measured runs only, each counted from the start of wrk to ${settle / 1_000} s after its end (the sink's and meshd's counters read before and after); ` +
        `spans / request: spans received ÷ requests wrk completed; meshd CPU in the settle time: median over runs of meshd's CPU time between wrk's end and the end of the window (10 ms ticks), ` +
        `the last exports plus what meshd spends idle (the off row). meshd also traces the requests wrk abandons when it stops (answered 499, up to ${settings.connections} a run), so 100 % can read slightly above 1`,
      `- whole run (readiness probes and warm-ups included): the sink received ${count(sinkEnd.spans)} spans in ${count(sinkEnd.posts)} POSTs` +
        `${sinkEnd.rejected > 0 ? ` and rejected ${sinkEnd.rejected}` : ''}; ${SPANS_METRIC}: ${wholeRun.join('; ')}`,
    );

    const spread = [
      '## Spread over rounds',
      '',
      '| target | req/s min – max | p99 min – max | meshd CPU µs/request min – max | other CPU max |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...ROWS.map((row) => {
        const runs = runsOf(row);
        const cpuRange = row === 'direct' ? '—' : range(finite(runs.map((r) => r.cpuUsPerRequest)), us);
        const otherMax = Math.max(...finite(runs.map((r) => r.otherCpuPct)));
        return `| ${row} | ${range(
          runs.map((r) => r.wrk.requestsPerSec),
          fmtRps,
        )} | ${range(
          runs.map((r) => r.wrk.p99Ms),
          fmtMs,
        )} | ${cpuRange} | ${fmtPct(otherMax)} |`;
      }),
      '',
      ...TRACED_ROWS.map(
        (row) =>
          `- ${row} / off, round by round: req/s ${rpsRatios(row)
            .map((v) => `${v.toFixed(2)}×`)
            .join(', ')}; CPU per request ${cpuRatios(row)
            .map((v) => `${v.toFixed(2)}×`)
            .join(
              ', ',
            )} (median ${fmtRatio(median(cpuRatios(row)), 1)}); added µs/request ${addedUs(row).map(signedUs).join(', ')} (median ${signedUs(median(addedUs(row)))})`,
      ),
    ];

    const problems: string[] = [];
    const notes: string[] = [];
    for (const row of ROWS) {
      const non2xx = sum(row, (r) => r.wrk.non2xx3xx);
      const errors = sum(row, (r) => socketErrors(r.wrk));
      if (non2xx > 0 || errors > 0) problems.push(`- ${row}: ${non2xx} non-2xx/3xx responses, ${errors} socket errors`);
      const other = med(row, (r) => r.otherCpuPct);
      if (other > DISTURBED_PCT)
        problems.push(`- ${row}: other processes used a median ${Math.round(other)}% of a core during its runs; its numbers are disturbed`);
      // Spans arriving while another row ran were sent late: the window missed their cost.
      const stray = sum(row, (r) => r.exports.sink.spans);
      if (!isTraced(row) && stray > 0)
        problems.push(`- ${stray} spans reached the sink during ${row}'s runs: a traced meshd exported after its settle time, outside its counted window`);
      if (isTraced(row)) {
        const exported = sum(row, (r) => r.exports.meshd.exported);
        if (exported !== stray)
          problems.push(`- ${row}: meshd counted ${exported} spans exported but the sink received ${stray} during its runs (late or lost exports)`);
        if (stray === 0) problems.push(`- ${row}: the sink received no spans: tracing did not export`);
        const dropped = sum(row, (r) => r.exports.meshd.dropped);
        if (dropped > 0)
          notes.push(
            `- ${row}: the export queue dropped ${count(dropped)} spans (queue full: meshd made them faster than one export at a time could send them); ` +
              `their cost up to the queue is in the CPU figures, the export's is not`,
          );
      }
    }
    if (sinkEnd.rejected > 0) problems.push(`- the sink could not read ${sinkEnd.rejected} POSTs as OTLP/JSON`);
    for (const row of MESHD_ROWS) {
      const warnings = meshdWarnings((servers.get(row) as Server).proc);
      // A full queue is logged once per episode; its drops are counted in the export table.
      const queueFull = warnings.samples.filter((w) => w.includes('trace export queue full'));
      const expected = queueFull.reduce((n, w) => n + Number(/^(\d+)×/.exec(w)?.[1] ?? 0), 0);
      if (expected > 0) notes.push(`- ${row} logged "trace export queue full; dropping spans" ${expected} time(s)`);
      if (warnings.count > expected) {
        problems.push(
          `- ${row} logged ${warnings.count - expected} line(s) at warn or above: ${warnings.samples.filter((w) => !queueFull.includes(w)).join('; ')}`,
        );
      }
      const failures = sum(row, (r) => r.wrk.non2xx3xx + socketErrors(r.wrk));
      const findings = metricFindings(metricsBefore.get(row), metricsAfter.get(row), abandoned.get(row) ?? 0, failures);
      problems.push(...findings.problems.map((p) => p.replace(/^- /, `- ${row}: `)));
      notes.push(...findings.notes.map((n) => n.replace(/^- /, `- ${row}: `)));
    }

    const otelEnv = Object.keys(process.env)
      .filter((k) => k.startsWith('OTEL_'))
      .sort();
    const wrkCmd = `wrk -t${THREADS} -c${settings.connections} -d${settings.durationSec}s --latency -H 'Host: ${SERVICE}' http://127.0.0.1:PORT/`;
    const header = [
      `# meshd tracing cost, HTTP/1.1${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${revision}, three processes (tracing off, 1 %, 100 %), 1 worker each, log level warn`,
      `- node: ${process.version} (harness, backend, sink and meshd)`,
      `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- load: \`${wrkCmd}\` (5-byte answers, no traceparent: meshd starts every trace), ${settings.repeats} repeat(s) per target (medians shown), ` +
        `${settings.warmupSec} s warm-up per target, targets interleaved each round (order rotated); ${firstLine(tools.wrk, ['-v'])}`,
      ...retryNote(settings, discarded),
      `- pinning: ${pinning.enabled ? `the three meshd on CPU ${PROXY_CPU} (one under load at a time); backend, OTLP sink and wrk on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`,
      `- meshd tracing off: the http1 scenario's config (service \`${SERVICE}\`, one endpoint); the traced rows add \`tracing: { enabled: true, sampleRatio: R, endpoint: http://127.0.0.1:SINK/v1/traces }\` ` +
        `with R = 0.01 and 1. Every request gets a span (meshd records all, to export errors whatever the ratio); the sampled ones are exported`,
      `- export queue: ${otelEnv.length === 0 ? "no OTEL_* variable set, so OpenTelemetry's defaults: 2,048 spans queued at most, batches of 512, sent every 5 s or when a batch is full, one export at a time" : `meshd inherits ${otelEnv.map((k) => `${k}=${process.env[k] ?? ''}`).join(', ')}`}`,
      `- OTLP sink: \`node bench/tracing.ts --sink PORT\` (node:http, keep-alive): reads each POST whole, parses the JSON, counts resourceSpans[].scopeSpans[].spans and answers 200 \`{}\``,
      `- meshd CPU µs/request: that meshd's user+system time (/proc/PID/stat) from the start of the wrk run until ${settle / 1_000} s after its end ÷ the requests wrk completed. ` +
        `The wait (the queue's schedule delay + 1 s, every meshd row alike) lets the spans still queued at the end be exported inside the window that made them. ` +
        `CPU per request vs off: ratio of the medians; added µs/request: traced − off in the same round, median over rounds`,
      `- server CPU: CPU of the server wrk talked to (meshd; the backend for direct) while wrk ran, % of one core; load core busy: ${pinning.enabled ? `CPU ${LOAD_CPU} (backend + sink + wrk) busy share` : 'n/a (not pinned)'}`,
      `- peak RSS (max of sampled VmRSS and final VmHWM): ${watches.map((w) => `${w.name} ${fmtMiB(w.peakKb)}`).join(', ')}`,
      OTHER_CPU_NOTE,
    ];
    return writeReport('tracing', started, settings.quick, reportText(header, [...lines, '', ...exportLines, '', ...spread], problems, notes));
  } finally {
    clearInterval(sampler);
  }
}

if (import.meta.main) {
  const at = process.argv.indexOf(SINK_FLAG);
  const port = Number(at < 0 ? Number.NaN : process.argv[at + 1]);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    process.stderr.write(`usage: node bench/tracing.ts ${SINK_FLAG} PORT\n`);
    process.exit(2);
  }
  serveSink(port);
}
