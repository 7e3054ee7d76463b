/**
 * The HTTP/1.1 scenarios, driven by wrk: `http1` (the default) compares meshd
 * with nginx and HAProxy in front of the same node backend; `engines` compares
 * forwarding engines (engines.ts: http-proxy-3, node:http pipe, undici Pool)
 * with meshd and nginx. See bench/README.md.
 */
import { availableParallelism, release } from 'node:os';
import {
  cpuModel,
  CpuMeter,
  DISTURBED_PCT,
  LOAD_CPU,
  log,
  measureRounds,
  meshdWarnings,
  OTHER_CPU_NOTE,
  otherNote,
  packageVersion,
  PROXY_CPU,
  RETRY_PAUSE_MS,
  reportText,
  writeReport,
  retryNote,
  RssWatch,
  type ScenarioContext,
  type ScenarioOutcome,
} from './common.ts';
import { childPids, firstLine, freePort, tailOf, waitReady } from './procs.ts';
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
import { runWrk } from './wrk.ts';

const THREADS = 1;

/** Seconds this scenario may take at most with these settings (for the run's time budget). */
export function http1BudgetSec(ctx: Pick<ScenarioContext, 'settings'>, engines: boolean): number {
  const { settings } = ctx;
  const cells = (engines ? ENGINE_TARGETS : TARGETS).length * SIZES.length;
  const perRunSec = settings.durationSec + 5 + settings.retryDisturbed * (settings.durationSec + 5 + RETRY_PAUSE_MS / 1_000);
  return cells * (settings.repeats * perRunSec + settings.warmupSec + 5) + 60;
}

export async function runHttp1(ctx: ScenarioContext, engines: boolean): Promise<ScenarioOutcome> {
  const { settings, tools, pinning, proxyCpu, loadCpu, tmp, started, revision } = ctx;
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
  const meter = new CpuMeter(groups, loadCpu);
  const watches: RssWatch<Target>[] = [];
  // The engines scenario also reports the backend's memory (a bare node:http server) on the direct row.
  for (const [target, group] of groups) if (engines || target !== 'direct') watches.push(new RssWatch(target, () => group));
  for (const w of watches) w.sample(); // the first sample is the before-load RSS
  const sampler = setInterval(() => {
    for (const w of watches) w.sample();
  }, 250);

  try {
    const targets = [...servers.keys()];
    const wrkRun = async (target: Target, path: string, durationSec: number): Promise<RunResult> => {
      const server = servers.get(target);
      if (server === undefined) throw new Error(`no server for ${target}`);
      if (server.proc.exit !== undefined) {
        throw new Error(`${target} exited (code ${server.proc.exit.code}, signal ${server.proc.exit.signal}):\n${tailOf(server.proc)}`);
      }
      const { value: wrk, ...cpu } = await meter.measure(target, () =>
        runWrk({ wrk: tools.wrk, port: server.port, path, threads: THREADS, connections: settings.connections, durationSec, cpu: loadCpu }),
      );
      return { wrk, ...cpu };
    };

    if (settings.warmupSec > 0) {
      log(`warm-up: ${settings.warmupSec} s per target and size`);
      for (const size of SIZES) for (const target of targets) await wrkRun(target, size.path, settings.warmupSec);
    }

    const { results, discarded } = await measureRounds(
      settings,
      SIZES,
      targets,
      (target, size) => `${target}/${size.name}`,
      (target, size) => wrkRun(target, size.path, settings.durationSec),
      (target, size, run) => {
        const r = run.wrk;
        const errs = r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
        return (
          `${target.padEnd(engines ? 12 : 7)} ${size.name.padEnd(5)} ` +
          `${Math.round(r.requestsPerSec).toString().padStart(7)} req/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms` +
          `  cpu ${run.serverCpuPct?.toFixed(0) ?? '?'}%${run.loadCorePct !== undefined ? ` load-core ${run.loadCorePct.toFixed(0)}%` : ''}` +
          `${otherNote(run.otherCpuPct)}${r.non2xx3xx > 0 ? `  non-2xx ${r.non2xx3xx}` : ''}${errs > 0 ? `  socket errors ${errs}` : ''}`
        );
      },
    );

    clearInterval(sampler);
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
    const retries = retryNote(settings, discarded);
    const enginesHeader = [
      `# meshd forwarding-engine benchmark${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${revision}, 1 process, log level warn (its real outbound stack: undici Pool per endpoint behind node:http)`,
      `- node: ${process.version} (harness, backend, meshd and the minimal engines); undici ${packageVersion('undici')}, http-proxy-3 ${packageVersion('http-proxy-3')}`,
      `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- load: \`${wrkCmd}\`, ${settings.repeats} repeat(s) per cell (medians shown), ${settings.warmupSec} s warm-up per cell, targets interleaved each round`,
      ...retries,
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
      OTHER_CPU_NOTE,
      serverCpuNote,
      ...tools.notes.filter((n) => !n.startsWith('haproxy') && !n.startsWith('h2load')).map((n) => `- note: ${n}`),
    ];
    const http1Header = [
      `# meshd HTTP/1.1 proxy benchmark${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${revision}, 1 process, log level warn`,
      `- node: ${process.version} (harness, backend and meshd)`,
      `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- load: \`${wrkCmd}\`, ${settings.repeats} repeat(s) per cell (medians shown), ${settings.warmupSec} s warm-up per cell, targets interleaved each round`,
      ...retries,
      `- pinning: ${pinning.enabled ? `proxy under test on CPU ${PROXY_CPU}; backend and wrk on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`,
      `- backend: node:http keep-alive, 5-byte body (small) or 16 KiB body (16k); "direct" is wrk → backend with no proxy`,
      `- references: ${[firstLine(tools.wrk, ['-v']), tools.nginx !== undefined ? firstLine(tools.nginx, ['-v']) : 'nginx: skipped', tools.haproxy !== undefined ? firstLine(tools.haproxy, ['-v']) : 'haproxy: skipped'].join('; ')}`,
      `- nginx: 1 worker, upstream keepalive 64, access_log off; haproxy: nbthread 1, http-reuse always`,
      `- peak RSS (max of sampled VmRSS and final VmHWM): ${watches.map((w) => `${w.name} ${fmtMiB(w.peakKb)}`).join(', ')}`,
      `- added latency at a fixed rate: BENCH_SCENARIO=latency (open-loop generator, bench/fixed-rate.ts)`,
      `- ratios compare req/s; non-2xx/3xx, socket errors and requests are totals over all repeats`,
      OTHER_CPU_NOTE,
      serverCpuNote,
      ...tools.notes.filter((n) => !n.startsWith('h2load')).map((n) => `- note: ${n}`),
    ];
    const header = engines ? enginesHeader : http1Header;
    const problems: string[] = [];
    for (const s of summaries) {
      if (s.non2xx > 0 || socketErrorTotal(s) > 0) {
        problems.push(`- ${s.target}/${s.size}: ${s.non2xx} non-2xx/3xx responses, ${socketErrorTotal(s)} socket errors out of ${s.requests} requests`);
      }
    }
    for (const s of summaries) {
      if (s.otherCpuPct > DISTURBED_PCT)
        problems.push(
          `- ${s.target}/${s.size}: other processes used a median ${Math.round(s.otherCpuPct)}% of a core during its runs; its numbers are disturbed`,
        );
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
    const report = reportText(header, body, problems);

    const scenario = engines ? 'engines' : 'http1';
    return writeReport(scenario, started, settings.quick, report);
  } finally {
    clearInterval(sampler);
  }
}
