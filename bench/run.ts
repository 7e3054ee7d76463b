/**
 * HTTP/1.1 proxy benchmark: meshd against nginx and HAProxy, all in front of
 * the same node backend, driven by wrk. `npm run bench`; see bench/README.md.
 * BENCH_SCENARIO=engines instead compares forwarding engines: three minimal
 * Node proxies (engines.ts: http-proxy-3, node:http pipe, undici Pool) with
 * meshd and nginx.
 *
 * Layout on a 2-core host (when taskset is present): the proxy under test on
 * CPU 0, backend and wrk on CPU 1. Everything listens on 127.0.0.1 only.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  childPids,
  configurePinning,
  allCpuWorkJiffies,
  cpuCoreJiffies,
  cpuTicks,
  firstLine,
  freePort,
  killAllSync,
  procStatusKb,
  selfTicks,
  sleep,
  stopAll,
  tailOf,
  waitReady,
  type Proc,
} from './procs.ts';
import {
  ENGINE_TARGETS,
  enginesTable,
  fmtMiB,
  MINIMAL_ENGINES,
  perCoreRanking,
  SIZES,
  socketErrorTotal,
  summarize,
  table,
  TARGETS,
  type RunResult,
  type Summary,
  type Target,
} from './report.ts';
import { startBackend, startEngine, startHaproxy, startMeshd, startNginx, type Server } from './servers.ts';
import { ensureTools } from './tools.ts';
import { runWrk } from './wrk.ts';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const PROXY_CPU = 0;
const LOAD_CPU = 1;
const THREADS = 1;
/** USER_HZ: the unit of /proc/PID/stat CPU times; 100 on every mainstream Linux build. */
const CLOCK_TICKS_PER_SEC = 100;

/** `http1` (default): meshd vs nginx and HAProxy; `engines`: forwarding engines side by side. */
const SCENARIOS = ['http1', 'engines'] as const;
type Scenario = (typeof SCENARIOS)[number];

interface Settings {
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
}

/** Other CPU (% of one core) above which a run counts as disturbed (flagged in "Problems seen", retried with BENCH_RETRY_DISTURBED). */
const DISTURBED_PCT = 10;
/** Pause before re-running a disturbed measurement, to let the disturbance pass. */
const RETRY_PAUSE_MS = 10_000;

function envInt(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer in [${min}, ${max}], got "${raw}"`);
  }
  return value;
}

const truthy = (v: string | undefined): boolean => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';

function readScenario(): Scenario {
  const raw = (process.env['BENCH_SCENARIO'] ?? '').trim();
  if (raw === '') return 'http1';
  if (!(SCENARIOS as readonly string[]).includes(raw)) throw new Error(`BENCH_SCENARIO must be one of ${SCENARIOS.join(', ')}, got "${raw}"`);
  return raw as Scenario;
}

function readSettings(): Settings {
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
  };
}

const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};

/** Peak resident memory of a proxy: VmRSS sampled while it runs, and VmHWM read at the end. */
class RssWatch {
  readonly name: Target;
  private readonly pids: () => number[];
  private sampledPeakKb = 0;
  hwmKb: number | undefined;
  /** VmRSS once every server is ready, before any load. */
  startKb: number | undefined;

  constructor(name: Target, pids: () => number[]) {
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

function cpuModel(): string {
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
function packageVersion(name: string): string {
  try {
    const pkg = JSON.parse(readFileSync(join(BENCH_DIR, '..', 'node_modules', name, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function gitRevision(): string {
  const rev = spawnSync('git', ['-C', BENCH_DIR, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', timeout: 5_000 });
  if (rev.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['-C', BENCH_DIR, 'status', '--porcelain', '--', '../src', '../bin'], { encoding: 'utf8', timeout: 5_000 });
  return `${rev.stdout.trim()}${dirty.status === 0 && dirty.stdout.trim() !== '' ? ' (src/ has uncommitted changes)' : ''}`;
}

function resultPath(now: Date, scenario: Scenario, quick: boolean): string {
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
function meshdWarnings(proc: Proc): { count: number; samples: string[] } {
  if (proc.logFile === undefined) return { count: 0, samples: [] };
  let text = '';
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

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= stopAll();
  return cleaning;
}

/** The run's scratch dir (configs, logs); removed at the end unless kept for inspection. */
let scratch: string | undefined;
function removeScratch(): void {
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}

async function main(): Promise<number> {
  const settings = readSettings();
  const started = new Date();
  const revision = gitRevision(); // now: meshd loads its sources at start, and src/ may change during the run
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted) {
        killAllSync();
        process.exit(130);
      }
      interrupted = true;
      log(`${signal}: stopping every child process`);
      void cleanup().then(() => {
        if (!settings.keepTmp) removeScratch();
        process.exit(signal === 'SIGINT' ? 130 : 143);
      });
    });
  }
  process.on('exit', killAllSync);

  const tools = ensureTools(log);
  const pinning = configurePinning(!settings.pin);
  const proxyCpu = pinning.enabled ? PROXY_CPU : undefined;
  const loadCpu = pinning.enabled ? LOAD_CPU : undefined;
  log(`pinning: ${pinning.enabled ? `proxies on CPU ${PROXY_CPU}, backend and wrk on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`);

  const engines = settings.scenario === 'engines';
  log(`scenario: ${settings.scenario}`);
  // Everything this run may take, generously; past it the run aborts rather than hang.
  const cells = (engines ? ENGINE_TARGETS : TARGETS).length * SIZES.length;
  const perRunSec = settings.durationSec + 5 + settings.retryDisturbed * (settings.durationSec + 5 + RETRY_PAUSE_MS / 1_000);
  const budgetSec = cells * (settings.repeats * perRunSec + settings.warmupSec + 5) + 180;
  const watchdog = setTimeout(() => {
    log(`time budget of ${budgetSec} s exceeded; aborting`);
    void cleanup().then(() => process.exit(1));
  }, budgetSec * 1_000);

  const tmp = mkdtempSync(join(tmpdir(), 'meshd-bench-'));
  scratch = tmp;
  chmodSync(tmp, 0o755); // nginx workers may run as an unprivileged user
  let failed = true;
  let sampler: NodeJS.Timeout | undefined;
  try {
    const backendPort = await freePort();
    const backend = startBackend(tmp, backendPort, loadCpu);
    await waitReady(backend.proc, backendPort, '/', 5);

    // Insertion order is table order (and the first round's run order).
    const servers = new Map<Target, Server>();
    servers.set('direct', backend);
    if (engines) {
      for (const engine of MINIMAL_ENGINES) servers.set(engine, startEngine(engine, tmp, await freePort(), backendPort, proxyCpu));
    }
    const meshd = startMeshd(tmp, await freePort(), await freePort(), backendPort, proxyCpu);
    servers.set('meshd', meshd);
    if (tools.nginx !== undefined) servers.set('nginx', startNginx(tools.nginx, tmp, await freePort(), backendPort, proxyCpu));
    if (!engines && tools.haproxy !== undefined) {
      servers.set('haproxy', startHaproxy(tools.haproxy, tmp, await freePort(), backendPort, proxyCpu));
    }
    for (const [target, server] of servers) {
      for (const size of SIZES) await waitReady(server.proc, server.port, size.path, size.bytes);
      log(`${target} ready on 127.0.0.1:${server.port} (pid ${server.proc.pid})`);
    }

    // The processes of each server (nginx: master + worker), for RSS and CPU accounting.
    const groups = new Map<Target, number[]>();
    for (const [target, server] of servers) {
      const pid = server.proc.pid;
      groups.set(target, target === 'nginx' ? [pid, ...childPids(pid)] : [pid]);
    }
    const watches: RssWatch[] = [];
    // The engines scenario also reports the backend's memory (a bare node:http server) on the direct row.
    for (const [target, group] of groups) if (engines || target !== 'direct') watches.push(new RssWatch(target, () => group));
    const groupTicks = (target: Target): number | undefined => {
      let total = 0;
      for (const pid of groups.get(target) ?? []) {
        const t = cpuTicks(pid);
        if (t === undefined) return undefined;
        total += t;
      }
      return total;
    };
    /** CPU ticks of everything this benchmark runs: all servers, this process, and reaped children (wrk). */
    const ourTicks = (): number | undefined => {
      const self = selfTicks();
      if (self === undefined) return undefined;
      let total = self.self + self.children;
      for (const target of groups.keys()) {
        const t = groupTicks(target);
        if (t === undefined) return undefined;
        total += t;
      }
      return total;
    };
    for (const w of watches) w.sample(); // the first sample is the before-load RSS
    sampler = setInterval(() => {
      for (const w of watches) w.sample();
    }, 250);

    const targets = [...servers.keys()];
    const wrkRun = async (target: Target, path: string, durationSec: number): Promise<RunResult> => {
      const server = servers.get(target);
      if (server === undefined) throw new Error(`no server for ${target}`);
      if (server.proc.exit !== undefined) {
        throw new Error(`${target} exited (code ${server.proc.exit.code}, signal ${server.proc.exit.signal}):\n${tailOf(server.proc)}`);
      }
      const ticks0 = groupTicks(target);
      const core0 = loadCpu === undefined ? undefined : cpuCoreJiffies(loadCpu);
      const ours0 = ourTicks();
      const work0 = allCpuWorkJiffies();
      const t0 = performance.now();
      const wrk = await runWrk({
        wrk: tools.wrk,
        port: server.port,
        path,
        threads: THREADS,
        connections: settings.connections,
        durationSec,
        cpu: loadCpu,
      });
      const seconds = (performance.now() - t0) / 1_000;
      const ticks1 = groupTicks(target);
      const core1 = loadCpu === undefined ? undefined : cpuCoreJiffies(loadCpu);
      const ours1 = ourTicks();
      const work1 = allCpuWorkJiffies();
      const otherCpuPct =
        ours0 === undefined || ours1 === undefined || work0 === undefined || work1 === undefined
          ? undefined
          : Math.max(0, ((work1 - work0 - (ours1 - ours0)) / CLOCK_TICKS_PER_SEC / seconds) * 100);
      const serverCpuPct =
        ticks0 === undefined || ticks1 === undefined ? undefined : ((ticks1 - ticks0) / CLOCK_TICKS_PER_SEC / seconds) * 100;
      const loadCorePct =
        core0 === undefined || core1 === undefined || core1.total === core0.total
          ? undefined
          : ((core1.busy - core0.busy) / (core1.total - core0.total)) * 100;
      return { wrk, serverCpuPct, loadCorePct, otherCpuPct };
    };

    if (settings.warmupSec > 0) {
      log(`warm-up: ${settings.warmupSec} s per target and size`);
      for (const size of SIZES) for (const target of targets) await wrkRun(target, size.path, settings.warmupSec);
    }

    const results = new Map<string, RunResult[]>();
    let discarded = 0;
    for (let round = 0; round < settings.repeats; round++) {
      for (const size of SIZES) {
        // Rotate the order each round so no target always runs first (or right after another).
        const order = targets.map((_, i) => targets[(i + round) % targets.length] as Target);
        for (const target of order) {
          let run: RunResult;
          for (let retry = 0; ; retry++) {
            run = await wrkRun(target, size.path, settings.durationSec);
            const r = run.wrk;
            const errs = r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
            log(
              `round ${round + 1}/${settings.repeats} ${target.padEnd(engines ? 12 : 7)} ${size.name.padEnd(5)} ` +
                `${Math.round(r.requestsPerSec).toString().padStart(7)} req/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms` +
                `  cpu ${run.serverCpuPct?.toFixed(0) ?? '?'}%${run.loadCorePct !== undefined ? ` load-core ${run.loadCorePct.toFixed(0)}%` : ''}` +
                `${run.otherCpuPct !== undefined && run.otherCpuPct >= 5 ? `  OTHER-PROCESSES ${run.otherCpuPct.toFixed(0)}%` : ''}` +
                `${r.non2xx3xx > 0 ? `  non-2xx ${r.non2xx3xx}` : ''}${errs > 0 ? `  socket errors ${errs}` : ''}`,
            );
            if (retry >= settings.retryDisturbed || run.otherCpuPct === undefined || run.otherCpuPct <= DISTURBED_PCT) break;
            discarded++;
            log(`  disturbed (other CPU > ${DISTURBED_PCT}%): discarded; re-running in ${RETRY_PAUSE_MS / 1_000} s (retry ${retry + 1}/${settings.retryDisturbed})`);
            await sleep(RETRY_PAUSE_MS);
          }
          const key = `${target}/${size.name}`;
          results.set(key, [...(results.get(key) ?? []), run]);
        }
      }
    }

    clearInterval(sampler);
    sampler = undefined;
    for (const w of watches) {
      w.sample();
      w.finish();
    }

    const summaries: Summary[] = [];
    for (const size of SIZES) {
      for (const target of targets) summaries.push(summarize(target, size.name, results.get(`${target}/${size.name}`) ?? []));
    }

    const warnings = meshdWarnings(meshd.proc);
    const wrkCmd = `wrk -t${THREADS} -c${settings.connections} -d${settings.durationSec}s --latency -H 'Host: bench'`;
    const serverCpuNote =
      `- server CPU: CPU time of the server wrk talked to (the proxy; the backend for "direct") over the run, % of one core; req/s per server core: req/s ÷ server CPU, ` +
      `the throughput one fully busy core of that server would give (a fairer comparison when the load side limits a proxy); ` +
      `load core busy: ${pinning.enabled ? `CPU ${LOAD_CPU} (backend + wrk) busy share — near 100% means the load side, not the proxy, limits req/s` : 'n/a (not pinned)'}`;
    const otherCpuNote =
      `- other CPU: CPU (user+system+steal, % of one core, all cores) used during the run by processes this benchmark did not start ` +
      `(or stolen by the hypervisor); more than a few % means the numbers are disturbed`;
    const retryNote =
      settings.retryDisturbed > 0
        ? [
            `- disturbed runs (other CPU > ${DISTURBED_PCT}%) re-run up to ${settings.retryDisturbed} time(s) after a ${RETRY_PAUSE_MS / 1_000} s pause (BENCH_RETRY_DISTURBED): ` +
              `${discarded} run(s) discarded; a run still disturbed after the last retry is kept`,
          ]
        : [];
    const enginesHeader = [
      `# meshd forwarding-engine benchmark${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${revision}, 1 process, log level warn (its real outbound stack: undici Pool per endpoint behind node:http)`,
      `- node: ${process.version} (harness, backend, meshd and the minimal engines); undici ${packageVersion('undici')}, http-proxy-3 ${packageVersion('http-proxy-3')}`,
      `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- load: \`${wrkCmd}\`, ${settings.repeats} repeat(s) per cell (medians shown), ${settings.warmupSec} s warm-up per cell, targets interleaved each round`,
      ...retryNote,
      `- pinning: ${pinning.enabled ? `proxy under test on CPU ${PROXY_CPU}; backend and wrk on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`,
      `- backend: node:http keep-alive, 5-byte body (small) or 16 KiB body (16k); "direct" is wrk → backend with no proxy`,
      `- minimal engines (bench/engines.ts, one process each, same node:http server options): ` +
        `http-proxy-3 = \`proxy.web(req, res, { target }, onError)\` on \`http.Agent({ keepAlive: true, maxSockets: 256 })\`; ` +
        `node-pipe = \`http.request\` on the same kind of agent, request and response piped, status and end-to-end headers copied; ` +
        `undici-pool = one undici \`Pool\` (connections 256, pipelining 1, undici timers off), \`pool.dispatch\` with a handler writing the response with backpressure`,
      `- references: ${[firstLine(tools.wrk, ['-v']), tools.nginx !== undefined ? firstLine(tools.nginx, ['-v']) : 'nginx: skipped'].join('; ')}; nginx: 1 worker, upstream keepalive 64, access_log off`,
      `- RSS: "before load" is VmRSS once every server is ready, before the warm-up; "peak" is VmHWM (the kernel's high-water mark of resident memory) at the end of the run. ` +
        `Both are per server (nginx: master + worker; direct: the backend, a bare node:http server) and so the same for both sizes`,
      `- vs direct / vs nginx: req/s ratios; per core vs nginx / vs http-proxy-3: ratios of req/s per server core; non-2xx/3xx, socket errors and requests are totals over all repeats`,
      otherCpuNote,
      serverCpuNote,
      ...tools.notes.filter((n) => !n.startsWith('haproxy')).map((n) => `- note: ${n}`),
    ];
    const http1Header = [
      `# meshd HTTP/1.1 proxy benchmark${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${revision}, 1 process, log level warn`,
      `- node: ${process.version} (harness, backend and meshd)`,
      `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- load: \`${wrkCmd}\`, ${settings.repeats} repeat(s) per cell (medians shown), ${settings.warmupSec} s warm-up per cell, targets interleaved each round`,
      ...retryNote,
      `- pinning: ${pinning.enabled ? `proxy under test on CPU ${PROXY_CPU}; backend and wrk on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`,
      `- backend: node:http keep-alive, 5-byte body (small) or 16 KiB body (16k); "direct" is wrk → backend with no proxy`,
      `- references: ${[firstLine(tools.wrk, ['-v']), tools.nginx !== undefined ? firstLine(tools.nginx, ['-v']) : 'nginx: skipped', tools.haproxy !== undefined ? firstLine(tools.haproxy, ['-v']) : 'haproxy: skipped'].join('; ')}`,
      `- nginx: 1 worker, upstream keepalive 64, access_log off; haproxy: nbthread 1, http-reuse always`,
      `- peak RSS (max of sampled VmRSS and final VmHWM): ${watches.map((w) => `${w.name} ${fmtMiB(w.peakKb)}`).join(', ')}`,
      `- fixed-rate latency scenario: ${tools.wrk2 !== undefined ? 'wrk2 found but not used yet' : 'skipped (wrk2 not installed)'}`,
      `- ratios compare req/s; non-2xx/3xx, socket errors and requests are totals over all repeats`,
      otherCpuNote,
      serverCpuNote,
      ...tools.notes.map((n) => `- note: ${n}`),
    ];
    const header = engines ? enginesHeader : http1Header;
    const problems: string[] = [];
    for (const s of summaries) {
      if (s.non2xx > 0 || socketErrorTotal(s) > 0) {
        problems.push(`- ${s.target}/${s.size}: ${s.non2xx} non-2xx/3xx responses, ${socketErrorTotal(s)} socket errors out of ${s.requests} requests`);
      }
    }
    for (const s of summaries) {
      if (s.otherCpuPct > DISTURBED_PCT) problems.push(`- ${s.target}/${s.size}: other processes used a median ${Math.round(s.otherCpuPct)}% of a core during its runs; its numbers are disturbed`);
    }
    if (warnings.count > 0) problems.push(`- meshd logged ${warnings.count} line(s) at warn or above: ${warnings.samples.join('; ')}`);
    const body = engines
      ? [
          enginesTable(summaries, targets, new Map(watches.map((w) => [w.name, { startKb: w.startKb, hwmKb: w.hwmKb }]))),
          '',
          '## Req/s per server core, best first',
          '',
          ...perCoreRanking(summaries, targets),
        ]
      : [table(summaries)];
    const report = [...header, '', ...body, '', ...(problems.length > 0 ? ['## Problems seen', '', ...problems, ''] : [])].join('\n');

    const file = resultPath(started, settings.scenario, settings.quick);
    writeFileSync(file, `${report}\n`);
    process.stdout.write(`\n${report}\n`);
    log(`written to ${file}`);
    failed = false;
    return 0;
  } finally {
    if (sampler !== undefined) clearInterval(sampler);
    clearTimeout(watchdog);
    await cleanup();
    if (failed || settings.keepTmp) log(`logs and configs kept in ${tmp}`);
    else removeScratch();
  }
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await cleanup();
    process.exit(1);
  },
);
