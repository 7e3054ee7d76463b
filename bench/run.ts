/**
 * HTTP/1.1 proxy benchmark: meshd against nginx and HAProxy, all in front of
 * the same node backend, driven by wrk. `npm run bench`; see bench/README.md.
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
  cpuCoreJiffies,
  cpuTicks,
  firstLine,
  freePort,
  killAllSync,
  procStatusKb,
  stopAll,
  tailOf,
  waitReady,
  type Proc,
} from './procs.ts';
import { fmtMiB, SIZES, socketErrorTotal, summarize, table, TARGETS, type RunResult, type Summary, type Target } from './report.ts';
import { startBackend, startHaproxy, startMeshd, startNginx, type Server } from './servers.ts';
import { ensureTools } from './tools.ts';
import { runWrk } from './wrk.ts';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const PROXY_CPU = 0;
const LOAD_CPU = 1;
const THREADS = 1;
/** USER_HZ: the unit of /proc/PID/stat CPU times; 100 on every mainstream Linux build. */
const CLOCK_TICKS_PER_SEC = 100;

interface Settings {
  readonly quick: boolean;
  readonly durationSec: number;
  readonly repeats: number;
  readonly warmupSec: number;
  readonly connections: number;
  readonly pin: boolean;
  readonly keepTmp: boolean;
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

const truthy = (v: string | undefined): boolean => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';

function readSettings(): Settings {
  const quick = truthy(process.env['BENCH_QUICK']);
  return {
    quick,
    durationSec: envInt('BENCH_DURATION', quick ? 2 : 5, 1, 600),
    repeats: envInt('BENCH_REPEATS', quick ? 1 : 3, 1, 50),
    warmupSec: envInt('BENCH_WARMUP', quick ? 1 : 2, 0, 60),
    connections: envInt('BENCH_CONNECTIONS', 64, 1, 4096),
    pin: process.env['BENCH_PIN'] === undefined || truthy(process.env['BENCH_PIN']),
    keepTmp: truthy(process.env['BENCH_KEEP_TMP']),
  };
}

const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};

/** Peak resident memory of a proxy: VmRSS sampled while it runs, and VmHWM read at the end. */
class RssWatch {
  readonly name: string;
  private readonly pids: () => number[];
  private sampledPeakKb = 0;
  hwmKb: number | undefined;

  constructor(name: string, pids: () => number[]) {
    this.name = name;
    this.pids = pids;
  }

  sample(): void {
    let total = 0;
    for (const pid of this.pids()) total += procStatusKb(pid, 'VmRSS') ?? 0;
    this.sampledPeakKb = Math.max(this.sampledPeakKb, total);
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

function gitRevision(): string {
  const rev = spawnSync('git', ['-C', BENCH_DIR, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', timeout: 5_000 });
  if (rev.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['-C', BENCH_DIR, 'status', '--porcelain', '--', '../src', '../bin'], { encoding: 'utf8', timeout: 5_000 });
  return `${rev.stdout.trim()}${dirty.status === 0 && dirty.stdout.trim() !== '' ? ' (src/ has uncommitted changes)' : ''}`;
}

function resultPath(now: Date, quick: boolean): string {
  const dir = join(BENCH_DIR, 'results');
  mkdirSync(dir, { recursive: true });
  const keep = join(dir, '.gitkeep');
  if (!existsSync(keep)) writeFileSync(keep, '');
  const date = now.toISOString().slice(0, 10);
  const suffix = quick ? '-http1-quick' : '-http1';
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

  // Everything this run may take, generously; past it the run aborts rather than hang.
  const cells = TARGETS.length * SIZES.length;
  const budgetSec = cells * (settings.repeats * (settings.durationSec + 5) + settings.warmupSec + 5) + 180;
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

    const servers = new Map<Target, Server>();
    servers.set('direct', backend);
    const meshd = startMeshd(tmp, await freePort(), await freePort(), backendPort, proxyCpu);
    servers.set('meshd', meshd);
    if (tools.nginx !== undefined) servers.set('nginx', startNginx(tools.nginx, tmp, await freePort(), backendPort, proxyCpu));
    if (tools.haproxy !== undefined) servers.set('haproxy', startHaproxy(tools.haproxy, tmp, await freePort(), backendPort, proxyCpu));
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
    for (const [target, group] of groups) if (target !== 'direct') watches.push(new RssWatch(target, () => group));
    const groupTicks = (target: Target): number | undefined => {
      let total = 0;
      for (const pid of groups.get(target) ?? []) {
        const t = cpuTicks(pid);
        if (t === undefined) return undefined;
        total += t;
      }
      return total;
    };
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
      const serverCpuPct =
        ticks0 === undefined || ticks1 === undefined ? undefined : ((ticks1 - ticks0) / CLOCK_TICKS_PER_SEC / seconds) * 100;
      const loadCorePct =
        core0 === undefined || core1 === undefined || core1.total === core0.total
          ? undefined
          : ((core1.busy - core0.busy) / (core1.total - core0.total)) * 100;
      return { wrk, serverCpuPct, loadCorePct };
    };

    if (settings.warmupSec > 0) {
      log(`warm-up: ${settings.warmupSec} s per target and size`);
      for (const size of SIZES) for (const target of targets) await wrkRun(target, size.path, settings.warmupSec);
    }

    const results = new Map<string, RunResult[]>();
    for (let round = 0; round < settings.repeats; round++) {
      for (const size of SIZES) {
        // Rotate the order each round so no target always runs first (or right after another).
        const order = targets.map((_, i) => targets[(i + round) % targets.length] as Target);
        for (const target of order) {
          const run = await wrkRun(target, size.path, settings.durationSec);
          const key = `${target}/${size.name}`;
          results.set(key, [...(results.get(key) ?? []), run]);
          const r = run.wrk;
          const errs = r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
          log(
            `round ${round + 1}/${settings.repeats} ${target.padEnd(7)} ${size.name.padEnd(5)} ` +
              `${Math.round(r.requestsPerSec).toString().padStart(7)} req/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms` +
              `  cpu ${run.serverCpuPct?.toFixed(0) ?? '?'}%${run.loadCorePct !== undefined ? ` load-core ${run.loadCorePct.toFixed(0)}%` : ''}` +
              `${r.non2xx3xx > 0 ? `  non-2xx ${r.non2xx3xx}` : ''}${errs > 0 ? `  socket errors ${errs}` : ''}`,
          );
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
    const header = [
      `# meshd HTTP/1.1 proxy benchmark${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${gitRevision()}, 1 process, log level warn`,
      `- node: ${process.version} (harness, backend and meshd)`,
      `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- load: \`${wrkCmd}\`, ${settings.repeats} repeat(s) per cell (medians shown), ${settings.warmupSec} s warm-up per cell, targets interleaved each round`,
      `- pinning: ${pinning.enabled ? `proxy under test on CPU ${PROXY_CPU}; backend and wrk on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`,
      `- backend: node:http keep-alive, 5-byte body (small) or 16 KiB body (16k); "direct" is wrk → backend with no proxy`,
      `- references: ${[firstLine(tools.wrk, ['-v']), tools.nginx !== undefined ? firstLine(tools.nginx, ['-v']) : 'nginx: skipped', tools.haproxy !== undefined ? firstLine(tools.haproxy, ['-v']) : 'haproxy: skipped'].join('; ')}`,
      `- nginx: 1 worker, upstream keepalive 64, access_log off; haproxy: nbthread 1, http-reuse always`,
      `- peak RSS (max of sampled VmRSS and final VmHWM): ${watches.map((w) => `${w.name} ${fmtMiB(w.peakKb)}`).join(', ')}`,
      `- fixed-rate latency scenario: ${tools.wrk2 !== undefined ? 'wrk2 found but not used yet' : 'skipped (wrk2 not installed)'}`,
      `- ratios compare req/s; non-2xx/3xx, socket errors and requests are totals over all repeats`,
      `- server CPU: CPU time of the server wrk talked to (the proxy; the backend for "direct") over the run, % of one core; ` +
        `load core busy: ${pinning.enabled ? `CPU ${LOAD_CPU} (backend + wrk) busy share — near 100% means the load side, not the proxy, limits req/s` : 'n/a (not pinned)'}`,
      ...tools.notes.map((n) => `- note: ${n}`),
    ];
    const problems: string[] = [];
    for (const s of summaries) {
      if (s.non2xx > 0 || socketErrorTotal(s) > 0) {
        problems.push(`- ${s.target}/${s.size}: ${s.non2xx} non-2xx/3xx responses, ${socketErrorTotal(s)} socket errors out of ${s.requests} requests`);
      }
    }
    if (warnings.count > 0) problems.push(`- meshd logged ${warnings.count} line(s) at warn or above: ${warnings.samples.join('; ')}`);
    const report = [...header, '', table(summaries), '', ...(problems.length > 0 ? ['## Problems seen', '', ...problems, ''] : [])].join('\n');

    const file = resultPath(started, settings.quick);
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
