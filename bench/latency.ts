/**
 * The latency scenario: what each proxy adds to a request's latency at a
 * fixed, moderate load (RATE req/s, open loop) rather than at saturation.
 * The same targets as http1 (direct, meshd, nginx, HAProxy in front of one
 * node backend), small body only, driven by bench/fixed-rate.ts (its own
 * process on the load CPU, latency from each request's scheduled send time).
 * Warm-up, repeats and interleaving as in the other scenarios; "added" is
 * the target's percentile minus direct's from the same round, median over
 * rounds. See bench/README.md.
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
import type { FixedRateReport, Percentiles } from './fixed-rate.ts';
import { childPids, firstLine, freePort, startProcess, stopProcess, tailOf, waitReady, withTimeout } from './procs.ts';
import { fmtMs, fmtPct, fmtRps, median, TARGETS, type Target } from './report.ts';
import { startBackend, startHaproxy, startMeshd, startNginx, type Server } from './servers.ts';

const RATE = 2_000;
const CONNECTIONS = 32;
const GENERATOR = join(BENCH_DIR, 'fixed-rate.ts');
/** Beyond the run's duration: node start-up, up to 5 s connecting, the generator's own 5 s grace, and slack. */
const OVERRUN_SEC = 20;

type LatencyTarget = (typeof TARGETS)[number];

interface LatencyRun {
  readonly gen: FixedRateReport;
  readonly serverCpuPct: number | undefined;
  readonly loadCorePct: number | undefined;
  readonly otherCpuPct: number | undefined;
}

export function latencyBudgetSec(ctx: Pick<ScenarioContext, 'settings'>): number {
  const { settings } = ctx;
  const perRunSec = settings.latencyDurationSec + OVERRUN_SEC + settings.retryDisturbed * (settings.latencyDurationSec + OVERRUN_SEC + RETRY_PAUSE_MS / 1_000);
  return TARGETS.length * (settings.repeats * perRunSec + settings.warmupSec + OVERRUN_SEC) + 60;
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN); // JSON turns NaN into null

function readPercentiles(v: unknown): Percentiles {
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  return { count: num(o['count']), mean: num(o['mean']), p50: num(o['p50']), p90: num(o['p90']), p99: num(o['p99']), p999: num(o['p999']), max: num(o['max']) };
}

/** The generator's JSON line, with NaN for the percentiles of an empty sample. */
function parseReport(output: string): FixedRateReport {
  const line = output
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error(`fixed-rate printed no JSON report:\n${output}`);
  const raw = JSON.parse(line) as FixedRateReport;
  if (typeof raw.completed !== 'number' || typeof raw.scheduled !== 'number') throw new Error(`fixed-rate report without counts: ${line}`);
  return {
    ...raw,
    achievedRps: num(raw.achievedRps),
    cpuPct: num(raw.cpuPct),
    latencyMs: readPercentiles(raw.latencyMs),
    sendLagMs: readPercentiles(raw.sendLagMs),
  };
}

/** One run of bench/fixed-rate.ts against `port`; killed (and rejected) if it overruns. */
async function runFixedRate(port: number, durationSec: number, cpu: number | undefined): Promise<FixedRateReport> {
  const args = [
    GENERATOR,
    '--port',
    String(port),
    '--rate',
    String(RATE),
    '--duration',
    String(durationSec),
    '--connections',
    String(CONNECTIONS),
    '--path',
    '/',
    '--host',
    'bench',
  ];
  const proc = startProcess({ name: 'fixed-rate', command: process.execPath, args, cpu });
  const limitMs = (durationSec + OVERRUN_SEC) * 1_000;
  const outcome = await withTimeout(proc.exited, limitMs);
  if (outcome === 'timeout') {
    await stopProcess(proc, 1_000);
    throw new Error(`fixed-rate did not finish within ${limitMs} ms:\n${proc.output}`);
  }
  if (outcome.code !== 0) throw new Error(`fixed-rate exited with code ${outcome.code} signal ${outcome.signal}:\n${proc.output}`);
  return parseReport(proc.output);
}

const errorCount = (g: FixedRateReport): number => g.errors.connect + g.errors.io + g.errors.protocol + g.unfinished + g.unsent;

/** A latency difference with its sign: "+85 µs", "-0.12 ms". */
const fmtDelta = (ms: number): string => (Number.isFinite(ms) ? `${ms >= 0 ? '+' : '-'}${fmtMs(Math.abs(ms))}` : 'n/a');

export async function runLatency(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tools, pinning, proxyCpu, loadCpu, tmp, started, revision } = ctx;
  const backendPort = await freePort();
  const backend = startBackend(tmp, backendPort, loadCpu);
  await waitReady(backend.proc, backendPort, '/', 5);

  // Insertion order is table order (and the first round's run order).
  const servers = new Map<LatencyTarget, Server>([['direct', backend]]);
  const adminPort = await freePort();
  const meshd = startMeshd(tmp, await freePort(), adminPort, backendPort, proxyCpu);
  servers.set('meshd', meshd);
  if (tools.nginx !== undefined) servers.set('nginx', startNginx(tools.nginx, tmp, await freePort(), backendPort, proxyCpu));
  if (tools.haproxy !== undefined) servers.set('haproxy', startHaproxy(tools.haproxy, tmp, await freePort(), backendPort, proxyCpu));
  for (const [target, server] of servers) {
    await waitReady(server.proc, server.port, '/', 5);
    log(`${target} ready on 127.0.0.1:${server.port} (pid ${server.proc.pid})`);
  }
  const groups = new Map<string, number[]>();
  for (const [target, server] of servers) groups.set(target, target === 'nginx' ? [server.proc.pid, ...childPids(server.proc.pid)] : [server.proc.pid]);
  const meter = new CpuMeter(groups, loadCpu);
  const metricsBefore = await scrapeMetrics(adminPort);

  /** Requests still in flight when runs through meshd hit the generator's hard stop (warm-ups included). */
  let meshdAbandoned = 0;
  const runOnce = async (target: LatencyTarget, durationSec: number): Promise<LatencyRun> => {
    const server = servers.get(target);
    if (server === undefined) throw new Error(`no server for ${target}`);
    for (const s of [backend, server]) {
      if (s.proc.exit !== undefined) throw new Error(`${s.name} exited (code ${s.proc.exit.code}, signal ${s.proc.exit.signal}):\n${tailOf(s.proc)}`);
    }
    const { value: gen, ...cpu } = await meter.measure(target, () => runFixedRate(server.port, durationSec, loadCpu));
    if (target === 'meshd') meshdAbandoned += gen.unfinished;
    return { gen, ...cpu };
  };

  const targets = [...servers.keys()];
  if (settings.warmupSec > 0) {
    log(`latency warm-up: ${settings.warmupSec} s at ${RATE} req/s per target`);
    for (const target of targets) await runOnce(target, settings.warmupSec);
  }
  const { results, discarded } = await measureRounds(
    settings,
    [undefined],
    targets,
    (target) => target,
    (target) => runOnce(target, settings.latencyDurationSec),
    (target, _size, r) => {
      const g = r.gen;
      const l = g.latencyMs;
      return (
        `${target.padEnd(7)} ${g.achievedRps.toFixed(0).padStart(5)} req/s  p50 ${l.p50.toFixed(3)} ms  p99 ${l.p99.toFixed(3)} ms  p99.9 ${l.p999.toFixed(3)} ms  max ${l.max.toFixed(2)} ms` +
        `  send lag p99 ${g.sendLagMs.p99.toFixed(3)} ms  generator ${g.cpuPct.toFixed(0)}%  cpu ${r.serverCpuPct?.toFixed(0) ?? '?'}%${r.loadCorePct !== undefined ? ` load-core ${r.loadCorePct.toFixed(0)}%` : ''}` +
        `${otherNote(r.otherCpuPct)}${g.non2xx3xx > 0 ? `  non-2xx ${g.non2xx3xx}` : ''}${errorCount(g) > 0 ? `  errors ${errorCount(g)}` : ''}`
      );
    },
  );
  const metricsAfter = await scrapeMetrics(adminPort);

  const runsOf = (t: Target): LatencyRun[] => results.get(t) ?? [];
  const med = (runs: readonly LatencyRun[], pick: (r: LatencyRun) => number | undefined): number =>
    median(runs.map(pick).filter((v): v is number => v !== undefined && Number.isFinite(v)));
  /** Target minus direct, round by round (measureRounds keeps one run per cell and round), median over rounds. */
  const added = (t: Target, pick: (p: Percentiles) => number): number => {
    const direct = runsOf('direct');
    const diffs = runsOf(t).flatMap((r, round) => {
      const d = direct[round];
      return d === undefined ? [] : [pick(r.gen.latencyMs) - pick(d.gen.latencyMs)];
    });
    return median(diffs.filter(Number.isFinite));
  };

  const lines = [
    '| target | achieved req/s | p50 | p90 | p99 | p99.9 | max | added p50 / p99 vs direct | server CPU | send lag p50 / p99 | generator CPU | load core busy | other CPU | non-2xx/3xx | errors | completed / scheduled |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const problems: string[] = [];
  const notes: string[] = [];
  for (const target of targets) {
    const runs = runsOf(target);
    const lat = (pick: (p: Percentiles) => number): number => med(runs, (r) => pick(r.gen.latencyMs));
    const sum = (pick: (g: FixedRateReport) => number): number => runs.reduce((a, r) => a + pick(r.gen), 0);
    const maxMs = Math.max(...runs.map((r) => r.gen.latencyMs.max).filter(Number.isFinite));
    const isDirect = target === 'direct';
    const other = med(runs, (r) => r.otherCpuPct);
    lines.push(
      `| ${target} | ${fmtRps(med(runs, (r) => r.gen.achievedRps))} | ${fmtMs(lat((p) => p.p50))} | ${fmtMs(lat((p) => p.p90))} | ${fmtMs(lat((p) => p.p99))} | ` +
        `${fmtMs(lat((p) => p.p999))} | ${fmtMs(maxMs)} | ${isDirect ? '—' : `${fmtDelta(added(target, (p) => p.p50))} / ${fmtDelta(added(target, (p) => p.p99))}`} | ` +
        `${fmtPct(med(runs, (r) => r.serverCpuPct))} | ${fmtMs(med(runs, (r) => r.gen.sendLagMs.p50))} / ${fmtMs(med(runs, (r) => r.gen.sendLagMs.p99))} | ` +
        `${fmtPct(med(runs, (r) => r.gen.cpuPct))} | ` +
        `${fmtPct(med(runs, (r) => r.loadCorePct))} | ${fmtPct(other)} | ${sum((g) => g.non2xx3xx)} | ${sum(errorCount)} | ` +
        `${sum((g) => g.completed).toLocaleString('en-US')} / ${sum((g) => g.scheduled).toLocaleString('en-US')} |`,
    );
    const errs = sum(errorCount);
    if (errs > 0 || sum((g) => g.non2xx3xx) > 0) {
      problems.push(
        `- ${target}: ${sum((g) => g.non2xx3xx)} non-2xx/3xx responses; errors: ${sum((g) => g.errors.connect)} connect, ${sum((g) => g.errors.io)} io, ` +
          `${sum((g) => g.errors.protocol)} protocol, ${sum((g) => g.unfinished)} unanswered and ${sum((g) => g.unsent)} never sent at the hard stop`,
      );
    }
    const slow = runs.filter((r) => r.gen.achievedRps < RATE * 0.99).length;
    if (slow > 0)
      problems.push(`- ${target}: ${slow} run(s) below 99% of ${RATE} req/s: the target (or the load core) could not keep up, and latencies include queueing`);
    const queued = Math.max(0, ...runs.map((r) => r.gen.maxQueued));
    // Not a distortion: their latency counts from their due time, as it would in the proxy's accept queue.
    if (queued > 0)
      notes.push(
        `- ${target}: at worst ${queued} due request(s) waited at once for one of the ${CONNECTIONS} connections (a stall of ≥ ${((CONNECTIONS / RATE) * 1_000).toFixed(0)} ms); their latency counts from their due time`,
      );
    const lagP99 = med(runs, (r) => r.gen.sendLagMs.p99);
    if (lagP99 > 1) {
      problems.push(
        `- ${target}: the generator sent its p99 request ${fmtMs(lagP99)} late (median over runs): the load core stalled, so this row's p99 and above partly measure the load side, not ${target}`,
      );
    }
    if (other > DISTURBED_PCT)
      problems.push(`- ${target}: other processes used a median ${Math.round(other)}% of a core during its runs; its numbers are disturbed`);
  }
  const warnings = meshdWarnings(meshd.proc);
  if (warnings.count > 0) problems.push(`- meshd logged ${warnings.count} line(s) at warn or above: ${warnings.samples.join('; ')}`);
  const loadFailures = runsOf('meshd').reduce((a, r) => a + errorCount(r.gen) + r.gen.non2xx3xx, 0);
  const findings = metricFindings(metricsBefore, metricsAfter, meshdAbandoned, loadFailures);
  problems.push(...findings.problems);
  notes.push(...findings.notes);

  const genCmd = `node bench/fixed-rate.ts --rate ${RATE} --duration ${settings.latencyDurationSec} --connections ${CONNECTIONS} --path / --host bench --port PORT`;
  const header = [
    `# meshd added latency at a fixed ${RATE.toLocaleString('en-US')} req/s${settings.quick ? ' (quick mode)' : ''}`,
    '',
    `- date: ${started.toISOString()}`,
    `- meshd: ${revision}, 1 process, log level warn`,
    `- node: ${process.version} (harness, backend, meshd and load generator)`,
    `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
    `- pinning: ${pinning.enabled ? `proxy under test on CPU ${PROXY_CPU}; backend and load generator on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`,
    `- generator: \`${genCmd}\` — open loop: request i is due at start + i/${RATE} s whether or not earlier ones were answered, over ${CONNECTIONS} keep-alive HTTP/1.1 connections ` +
      `(raw sockets, one request in flight per connection, a due request waits for a free one); latency runs from the scheduled send time to the last response byte ` +
      `(performance.now()), so stalls and queueing count (no coordinated omission). A worker thread (Atomics.wait) wakes the sender at each due time; ` +
      `send lag (actual − scheduled send time) is the generator's own timing error, already inside every latency`,
    `- runs: \`GET /\` with \`Host: bench\` (5-byte body), ${settings.latencyDurationSec} s per run, ${settings.warmupSec} s warm-up per target at the same rate, ` +
      `${settings.repeats} repeat(s) (medians shown; max is the largest over all runs), targets interleaved each round (order rotated)`,
    ...retryNote(settings, discarded),
    `- backend: node:http keep-alive (bench/backend.ts); "direct" is the generator → backend with no proxy`,
    `- references: ${[tools.nginx !== undefined ? firstLine(tools.nginx, ['-v']) : 'nginx: skipped', tools.haproxy !== undefined ? firstLine(tools.haproxy, ['-v']) : 'haproxy: skipped'].join('; ')}; ` +
      `nginx: 1 worker, upstream keepalive 64, access_log off; haproxy: nbthread 1, http-reuse always`,
    `- achieved req/s: completed responses ÷ (last response − first scheduled send); added p50 / p99: the target's percentile minus direct's in the same round, median over rounds`,
    `- server CPU: CPU time of the server the generator talked to (the proxy; the backend for "direct") over the whole generator run (its ~0.1–0.2 s start-up included), % of one core; ` +
      `generator CPU: the load generator's own (both threads) while it runs the timetable; ` +
      `load core busy: ${pinning.enabled ? `CPU ${LOAD_CPU} (backend + generator) busy share` : 'n/a (not pinned)'}`,
    `- errors: failed connections, requests lost to a closed socket, unparsable responses, and requests unanswered or never sent at the generator's hard stop (duration + 5 s); totals over all runs`,
    OTHER_CPU_NOTE,
    ...tools.notes.filter((n) => !n.startsWith('h2load') && !n.startsWith('wrk')).map((n) => `- note: ${n}`),
  ];
  const report = reportText(header, lines, problems, notes);
  return writeReport('latency', started, settings.quick, report);
}
