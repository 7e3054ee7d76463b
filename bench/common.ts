/**
 * What every scenario shares: settings from the environment, the machine
 * description for report headers, result file names, CPU accounting around
 * one load run (server CPU, load core, other processes) with the re-run of
 * disturbed measurements, peak-RSS watching, and reading meshd's log and
 * metrics for anything odd.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allCpuWorkJiffies, cpuCoreJiffies, cpuTicks, httpGet, procStatusKb, selfTicks, sleep, type Pinning, type Proc } from './procs.ts';
import type { Tools } from './tools.ts';

export const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
export const PROXY_CPU = 0;
export const LOAD_CPU = 1;
/** USER_HZ: the unit of /proc/PID/stat CPU times; 100 on every mainstream Linux build. */
export const CLOCK_TICKS_PER_SEC = 100;
/** Other CPU (% of one core) above which a run counts as disturbed (flagged in "Problems seen", retried with BENCH_RETRY_DISTURBED). */
export const DISTURBED_PCT = 10;
/** Pause before re-running a disturbed measurement, to let the disturbance pass. */
export const RETRY_PAUSE_MS = 10_000;

/**
 * `http1` (default): meshd vs nginx and HAProxy; `engines`: forwarding engines side by side;
 * `http2`: h2c through meshd (h2load); `skewed`: balancing algorithms over latency-skewed
 * backends; `mtls`: meshd's mTLS hop between two meshd processes against a plain
 * two-hop and nginx's TLS hop; `latency`: added latency at a fixed 2,000 req/s (open loop);
 * `workers`: 1 against 2 workers; `soak`: memory over a 10-minute load; `micro`: balancer pick and EWMA ns/op;
 * `discovery`: discovery at scale; `mesh`: Kubernetes mesh mode; `traffic`: a traffic policy's cost per request;
 * `all`: http1, http2, skewed and mtls one after the other.
 */
export const SCENARIOS = [
  'http1',
  'engines',
  'http2',
  'skewed',
  'mtls',
  'latency',
  'workers',
  'soak',
  'micro',
  'discovery',
  'mesh',
  'traffic',
  'tracing',
  'all',
] as const;
export type Scenario = (typeof SCENARIOS)[number];
/** What BENCH_SCENARIO=all runs, in order. */
export const ALL_SCENARIOS = ['http1', 'http2', 'skewed', 'mtls'] as const satisfies readonly Scenario[];

export interface Settings {
  readonly scenario: Scenario;
  readonly quick: boolean;
  readonly durationSec: number;
  readonly repeats: number;
  readonly warmupSec: number;
  readonly connections: number;
  readonly pin: boolean;
  readonly keepTmp: boolean;
  /** Re-runs of one measurement that other processes disturbed (0: keep every run as measured). */
  readonly retryDisturbed: number;
  /** http2: h2load connections (`-c`) and concurrent streams per connection (`-m`). */
  readonly h2Clients: number;
  readonly h2Streams: number;
  /** skewed: seconds per wrk run and wrk connections. */
  readonly skewDurationSec: number;
  readonly skewConnections: number;
  /** latency: seconds per fixed-rate run (BENCH_DURATION too, with its own defaults). */
  readonly latencyDurationSec: number;
}

function envInt(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  }
  return value;
}

export const truthy = (v: string | undefined): boolean => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';

function readScenario(): Scenario {
  const raw = (process.env['BENCH_SCENARIO'] ?? '').trim();
  if (raw === '') return 'http1';
  if (!(SCENARIOS as readonly string[]).includes(raw)) throw new Error(`BENCH_SCENARIO must be one of ${SCENARIOS.join(', ')}, got "${raw}"`);
  return raw as Scenario;
}

export function readSettings(): Settings {
  const quick = truthy(process.env['BENCH_QUICK']);
  return {
    scenario: readScenario(),
    quick,
    durationSec: envInt('BENCH_DURATION', quick ? 2 : 5, 1, 600),
    repeats: envInt('BENCH_REPEATS', quick ? 1 : 3, 1, 50),
    warmupSec: envInt('BENCH_WARMUP', quick ? 1 : 2, 0, 60),
    connections: envInt('BENCH_CONNECTIONS', 64, 1, 4096),
    pin: process.env['BENCH_PIN'] === undefined || truthy(process.env['BENCH_PIN']),
    keepTmp: truthy(process.env['BENCH_KEEP_TMP']),
    retryDisturbed: envInt('BENCH_RETRY_DISTURBED', 0, 0, 20),
    h2Clients: envInt('BENCH_H2_CLIENTS', 16, 1, 4096),
    h2Streams: envInt('BENCH_H2_STREAMS', 10, 1, 1000),
    skewDurationSec: envInt('BENCH_SKEW_DURATION', quick ? 2 : 10, 1, 600),
    skewConnections: envInt('BENCH_SKEW_CONNECTIONS', 16, 1, 4096),
    latencyDurationSec: envInt('BENCH_DURATION', quick ? 3 : 10, 1, 600),
  };
}

/** Everything a scenario needs from the run that started it. */
export interface ScenarioContext {
  readonly settings: Settings;
  readonly tools: Tools;
  readonly pinning: Pinning;
  /** CPU of the proxy under test, or undefined when not pinned. */
  readonly proxyCpu: number | undefined;
  /** CPU of backends and load generator, or undefined when not pinned. */
  readonly loadCpu: number | undefined;
  /** This scenario's scratch dir (configs, logs). */
  readonly tmp: string;
  readonly started: Date;
  /** meshd's git revision, read when the run started. */
  readonly revision: string;
}

/** A finished scenario: its markdown report and where it was written. */
export interface ScenarioOutcome {
  readonly scenario: Scenario;
  readonly report: string;
  readonly file: string;
}

export const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};

export function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    const model = line?.split(':').slice(1).join(':').trim();
    if (model !== undefined && model !== '') return model;
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

/** The installed version of a dependency, from node_modules/<name>/package.json. */
export function packageVersion(name: string): string {
  try {
    const pkg = JSON.parse(readFileSync(join(BENCH_DIR, '..', 'node_modules', name, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function gitRevision(): string {
  const rev = spawnSync('git', ['-C', BENCH_DIR, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', timeout: 5_000 });
  if (rev.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['-C', BENCH_DIR, 'status', '--porcelain', '--', '../src', '../bin'], { encoding: 'utf8', timeout: 5_000 });
  return `${rev.stdout.trim()}${dirty.status === 0 && dirty.stdout.trim() !== '' ? ' (src/ has uncommitted changes)' : ''}`;
}

/** results/<date>-<scenario>[-quick][-N].md: the first name not taken yet. */
/** A scenario's markdown: its header facts, its tables, then "Problems seen" and "Notes" when there are any. */
export function reportText(header: readonly string[], body: readonly string[], problems: readonly string[] = [], notes: readonly string[] = []): string {
  return [
    ...header,
    '',
    ...body,
    '',
    ...(problems.length > 0 ? ['## Problems seen', '', ...problems, ''] : []),
    ...(notes.length > 0 ? ['## Notes', '', ...notes, ''] : []),
  ].join('\n');
}

/** Writes a scenario's report to results/ and returns the outcome run.ts prints. */
export function writeReport(scenario: Scenario, started: Date, quick: boolean, report: string): ScenarioOutcome {
  const file = resultPath(started, scenario, quick);
  writeFileSync(file, `${report}\n`);
  return { scenario, report, file };
}

export function resultPath(now: Date, scenario: Scenario, quick: boolean): string {
  const dir = join(BENCH_DIR, 'results');
  mkdirSync(dir, { recursive: true });
  const keep = join(dir, '.gitkeep');
  if (!existsSync(keep)) writeFileSync(keep, '');
  const date = now.toISOString().slice(0, 10);
  const suffix = `-${scenario}${quick ? '-quick' : ''}`;
  for (let i = 1; i < 1000; i++) {
    const file = join(dir, `${date}${suffix}${i === 1 ? '' : `-${i}`}.md`);
    if (!existsSync(file)) return file;
  }
  return join(dir, `${now.toISOString().replace(/[:.]/g, '-')}${suffix}.md`);
}

/** meshd log lines at warn or above: count and a few distinct messages. */
export function meshdWarnings(proc: Proc): { count: number; samples: string[] } {
  if (proc.logFile === undefined) return { count: 0, samples: [] };
  let text: string;
  try {
    text = readFileSync(proc.logFile, 'utf8');
  } catch {
    return { count: 0, samples: [] };
  }
  const seen = new Map<string, number>();
  let count = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let key = line.slice(0, 200);
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string; code?: string; err?: { message?: string } };
      if ((entry.level ?? 0) < 40) continue;
      key = `level ${entry.level}: ${entry.msg ?? ''}${entry.code !== undefined ? ` [${entry.code}]` : ''}${entry.err?.message !== undefined ? ` (${entry.err.message})` : ''}`;
    } catch {
      // not JSON (e.g. a Node warning): count it as is
    }
    count++;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  const samples = [...seen.entries()].slice(0, 5).map(([k, n]) => `${n}× ${k}`);
  return { count, samples };
}

/** Peak resident memory of a server: VmRSS sampled while it runs, and VmHWM read at the end. */
export class RssWatch<Name extends string = string> {
  readonly name: Name;
  private readonly pids: () => number[];
  private sampledPeakKb = 0;
  hwmKb: number | undefined;
  /** VmRSS once every server is ready, before any load. */
  startKb: number | undefined;

  constructor(name: Name, pids: () => number[]) {
    this.name = name;
    this.pids = pids;
  }

  sample(): void {
    let total = 0;
    for (const pid of this.pids()) total += procStatusKb(pid, 'VmRSS') ?? 0;
    this.sampledPeakKb = Math.max(this.sampledPeakKb, total);
    if (this.startKb === undefined && total > 0) this.startKb = total;
  }

  /** Sums VmHWM over the processes (for nginx: master + worker). */
  finish(): void {
    let total = 0;
    let any = false;
    for (const pid of this.pids()) {
      const kb = procStatusKb(pid, 'VmHWM');
      if (kb !== undefined) {
        total += kb;
        any = true;
      }
    }
    this.hwmKb = any ? total : undefined;
  }

  get peakKb(): number | undefined {
    const peak = Math.max(this.sampledPeakKb, this.hwmKb ?? 0);
    return peak > 0 ? peak : undefined;
  }
}

/** CPU use around one load run. */
export interface CpuWindow {
  /** CPU used by the server the load talked to (the proxy; the backend for "direct"), % of one core. */
  readonly serverCpuPct: number | undefined;
  /** Busy share of the core running backend + load generator (only when pinned), %. */
  readonly loadCorePct: number | undefined;
  /** CPU used during the run by processes outside the benchmark (plus steal), % of one core. */
  readonly otherCpuPct: number | undefined;
}

/**
 * CPU accounting for a set of named server process groups: the server's own
 * CPU, the load core's busy share, and what processes this benchmark did not
 * start used (all cores, plus steal) — the disturbance figure.
 */
export class CpuMeter {
  private readonly groups: ReadonlyMap<string, readonly number[]>;
  private readonly loadCpu: number | undefined;

  /** `groups`: every process this benchmark runs besides itself and its reaped load generators, by server name. */
  constructor(groups: ReadonlyMap<string, readonly number[]>, loadCpu: number | undefined) {
    this.groups = groups;
    this.loadCpu = loadCpu;
  }

  groupTicks(name: string): number | undefined {
    let total = 0;
    for (const pid of this.groups.get(name) ?? []) {
      const t = cpuTicks(pid);
      if (t === undefined) return undefined;
      total += t;
    }
    return total;
  }

  /** CPU ticks of everything this benchmark runs: all servers, this process, and reaped children (the load generator). */
  ourTicks(): number | undefined {
    const self = selfTicks();
    if (self === undefined) return undefined;
    let total = self.self + self.children;
    for (const name of this.groups.keys()) {
      const t = this.groupTicks(name);
      if (t === undefined) return undefined;
      total += t;
    }
    return total;
  }

  /** Runs `load` and reports the CPU used meanwhile; `server` names the group whose CPU is "server CPU". */
  async measure<T>(server: string, load: () => Promise<T>): Promise<{ value: T } & CpuWindow> {
    const ticks0 = this.groupTicks(server);
    const core0 = this.loadCpu === undefined ? undefined : cpuCoreJiffies(this.loadCpu);
    const ours0 = this.ourTicks();
    const work0 = allCpuWorkJiffies();
    const t0 = performance.now();
    const value = await load();
    const seconds = (performance.now() - t0) / 1_000;
    const ticks1 = this.groupTicks(server);
    const core1 = this.loadCpu === undefined ? undefined : cpuCoreJiffies(this.loadCpu);
    const ours1 = this.ourTicks();
    const work1 = allCpuWorkJiffies();
    const otherCpuPct =
      ours0 === undefined || ours1 === undefined || work0 === undefined || work1 === undefined
        ? undefined
        : Math.max(0, ((work1 - work0 - (ours1 - ours0)) / CLOCK_TICKS_PER_SEC / seconds) * 100);
    const serverCpuPct = ticks0 === undefined || ticks1 === undefined ? undefined : ((ticks1 - ticks0) / CLOCK_TICKS_PER_SEC / seconds) * 100;
    const loadCorePct =
      core0 === undefined || core1 === undefined || core1.total === core0.total ? undefined : ((core1.busy - core0.busy) / (core1.total - core0.total)) * 100;
    return { value, serverCpuPct, loadCorePct, otherCpuPct };
  }
}

/**
 * Runs one measurement, and again (after RETRY_PAUSE_MS) while other processes
 * disturbed it, up to `settings.retryDisturbed` times; `report` logs each
 * attempt, `onDiscard` counts the discarded ones. The last attempt is kept.
 */
export async function measureWithRetries<T extends { readonly otherCpuPct: number | undefined }>(
  settings: Settings,
  attempt: () => Promise<T>,
  report: (run: T) => void,
  onDiscard: () => void,
): Promise<T> {
  for (let retry = 0; ; retry++) {
    const run = await attempt();
    report(run);
    if (retry >= settings.retryDisturbed || run.otherCpuPct === undefined || run.otherCpuPct <= DISTURBED_PCT) return run;
    onDiscard();
    log(`  disturbed (other CPU > ${DISTURBED_PCT}%): discarded; re-running in ${RETRY_PAUSE_MS / 1_000} s (retry ${retry + 1}/${settings.retryDisturbed})`);
    await sleep(RETRY_PAUSE_MS);
  }
}

/**
 * The measured rounds every scenario shares: each round runs every cell (row × size) once, the
 * rows rotated so that none always runs first or right after another; a disturbed run is re-run
 * (measureWithRetries). Returns the runs by cell key and how many runs were discarded.
 */
export async function measureRounds<Row, Size, T extends { readonly otherCpuPct: number | undefined }>(
  settings: Settings,
  sizes: readonly Size[],
  rows: readonly Row[],
  key: (row: Row, size: Size) => string,
  attempt: (row: Row, size: Size) => Promise<T>,
  describe: (row: Row, size: Size, run: T) => string,
): Promise<{ results: Map<string, T[]>; discarded: number }> {
  const results = new Map<string, T[]>();
  let discarded = 0;
  for (let round = 0; round < settings.repeats; round++) {
    for (const size of sizes) {
      for (let i = 0; i < rows.length; i++) {
        const row = rows[(i + round) % rows.length] as Row;
        const run = await measureWithRetries(
          settings,
          () => attempt(row, size),
          (r) => log(`round ${round + 1}/${settings.repeats} ${describe(row, size, r)}`),
          () => discarded++,
        );
        const cell = key(row, size);
        results.set(cell, [...(results.get(cell) ?? []), run]);
      }
    }
  }
  return { results, discarded };
}

/** " OTHER-PROCESSES n%" for a log line when other processes used ≥ 5% of a core. */
export const otherNote = (otherCpuPct: number | undefined): string =>
  otherCpuPct !== undefined && otherCpuPct >= 5 ? `  OTHER-PROCESSES ${otherCpuPct.toFixed(0)}%` : '';

/** The header lines about disturbed runs and their retries. */
export function retryNote(settings: Settings, discarded: number): string[] {
  return settings.retryDisturbed > 0
    ? [
        `- disturbed runs (other CPU > ${DISTURBED_PCT}%) re-run up to ${settings.retryDisturbed} time(s) after a ${RETRY_PAUSE_MS / 1_000} s pause (BENCH_RETRY_DISTURBED): ` +
          `${discarded} run(s) discarded; a run still disturbed after the last retry is kept`,
      ]
    : [];
}

export const OTHER_CPU_NOTE =
  `- other CPU: CPU (user+system+steal, % of one core, all cores) used during the run by processes this benchmark did not start ` +
  `(or stolen by the hypervisor); more than a few % means the numbers are disturbed`;

/** Prometheus text samples of meshd's /metrics: `name{labels}` → value. */
export type MetricSamples = Map<string, number>;

/** Reads meshd's admin /metrics; undefined when it does not answer. */
export async function scrapeMetrics(adminPort: number): Promise<MetricSamples | undefined> {
  try {
    // The admin API answers IP-literal Host names only (DNS rebinding).
    const answer = await httpGet(adminPort, '/metrics', 5_000, { host: `127.0.0.1:${adminPort}` });
    if (answer.status !== 200) return undefined;
    const samples: MetricSamples = new Map();
    for (const line of answer.body.toString('utf8').split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([A-Za-z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
      if (m?.[1] !== undefined && m[2] !== undefined) samples.set(m[1], Number(m[2]));
    }
    return samples;
  } catch {
    return undefined;
  }
}

/** meshd counters that should not move in a clean benchmark run (non-2xx answers are picked from meshd_requests_total). */
const ANOMALY_COUNTERS = [
  'meshd_resets_total',
  'meshd_retries_total',
  'meshd_retry_budget_exhausted_total',
  'meshd_feedback_decisions_total',
  'meshd_client_errors_total',
  'meshd_connections_refused_total',
];

/**
 * What moved in meshd's metrics between two scrapes that a clean run would
 * not move: answers other than 2xx, resets, retries, feedback decisions
 * (ejections, shedding, limit changes), refused connections, client errors.
 */
export function metricAnomalies(before: MetricSamples | undefined, after: MetricSamples | undefined): string[] {
  if (before === undefined || after === undefined) return ['meshd metrics could not be read (admin /metrics did not answer)'];
  const out: string[] = [];
  for (const [key, value] of after) {
    const name = key.replace(/\{.*$/, '');
    const delta = value - (before.get(key) ?? 0);
    if (delta <= 0) continue;
    if (name === 'meshd_requests_total' ? !key.includes('code_class="2xx"') : ANOMALY_COUNTERS.includes(name)) out.push(`${key} +${delta}`);
  }
  return out;
}

/** The sum over series of `name` whose labels include every `label="value"` of `match`. */
export function metricSum(samples: MetricSamples | undefined, name: string, match: readonly string[] = []): number {
  let total = 0;
  for (const [key, value] of samples ?? []) {
    if (key.replace(/\{.*$/, '') !== name) continue;
    if (match.every((m) => key.includes(m))) total += value;
  }
  return total;
}

/** meshd metric movements sorted into real problems and the expected artefacts of stopping a load generator. */
export interface MetricFindings {
  readonly problems: string[];
  readonly notes: string[];
}

/**
 * Sorts metricAnomalies(): client resets and 4xx answers (meshd's 499 for a
 * caller gone) up to `clientStopBound` — the requests in flight summed over
 * the load runs through meshd, which the load generator abandons when it stops
 * — are notes; upstream resets while the load generators saw no failed or
 * truncated response (`loadFailures` = 0) are flagged as a meshd miscount;
 * everything else is a problem.
 */
export function metricFindings(
  before: MetricSamples | undefined,
  after: MetricSamples | undefined,
  clientStopBound: number,
  loadFailures: number,
): MetricFindings {
  const anomalies = metricAnomalies(before, after);
  if (before === undefined || after === undefined) return { problems: anomalies, notes: [] };
  const delta = (name: string, match: readonly string[]): number => metricSum(after, name, match) - metricSum(before, name, match);
  const clientResets = delta('meshd_resets_total', ['side="client"']);
  const answers4xx = delta('meshd_requests_total', ['code_class="4xx"']);
  const upstreamResets = delta('meshd_resets_total', ['side="upstream"']);
  const problems: string[] = [];
  const notes: string[] = [];
  let rest = anomalies;
  const isClientReset = (a: string): boolean => a.startsWith('meshd_resets_total') && a.includes('side="client"');
  const isUpstreamReset = (a: string): boolean => a.startsWith('meshd_resets_total') && a.includes('side="upstream"');
  // A caller hanging up while meshd still writes a finished upstream response can count on either side.
  const upstreamAtStop = clientResets + upstreamResets <= clientStopBound ? upstreamResets : 0;
  let upstreamLeft = upstreamResets;
  if (clientResets + upstreamAtStop <= clientStopBound && answers4xx <= clientResets) {
    rest = rest.filter((a) => !isClientReset(a) && !a.includes('code_class="4xx"') && (upstreamAtStop === 0 || !isUpstreamReset(a)));
    upstreamLeft -= upstreamAtStop;
    if (clientResets > 0 || answers4xx > 0 || upstreamAtStop > 0) {
      notes.push(
        `- meshd counted ${clientResets} client resets${upstreamAtStop > 0 ? `, ${upstreamAtStop} upstream resets` : ''} and ${answers4xx} 4xx answers (499: caller gone), ` +
          `within the ${clientStopBound} requests the load generators had in flight when their runs through meshd ended (warm-ups included): ` +
          `the load generator stopping, not errors`,
      );
    }
  }
  if (upstreamLeft > 0 && loadFailures === 0) {
    rest = rest.filter((a) => !isUpstreamReset(a));
    problems.push(
      `- meshd counted ${upstreamResets} upstream resets (meshd_resets_total{side="upstream"}: response cut after it started) while the load generators saw ` +
        `no failed, truncated or non-2xx response: a miscount in meshd's metrics, not failures on the data path`,
    );
  }
  if (rest.length > 0)
    problems.push(
      `- meshd metrics moved during the run (non-2xx answers, resets, retries, feedback decisions such as shedding or ejections): ${rest.join(', ')}`,
    );
  return { problems, notes };
}
