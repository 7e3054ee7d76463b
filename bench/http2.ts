/**
 * The http2 scenario: h2c (HTTP/2 cleartext, prior knowledge) into meshd's
 * outbound port, driven by h2load, to an h2c backend (service `protocol: h2c`)
 * and to the HTTP/1.1 backend, with nginx (`listen … http2`, HTTP/1.1
 * upstream) as the reference, and meshd's HTTP/1.1 figures (wrk) from the
 * same run beside them. Same pinning as the default scenario: the proxy on
 * CPU 0, backends and load generator on CPU 1. See bench/README.md.
 */
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import {
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
  packageVersion,
  PROXY_CPU,
  RETRY_PAUSE_MS,
  reportText,
  writeReport,
  retryNote,
  RssWatch,
  scrapeMetrics,
  type ScenarioContext,
  type ScenarioOutcome,
} from './common.ts';
import { runH2load, waitReadyH2 } from './h2load.ts';
import { childPids, firstLine, freePort, tailOf, waitReady } from './procs.ts';
import { fmtMiB, fmtMs, fmtPct, fmtRatio, fmtRps, SIZES, summarizeLoad, type LoadRun, type LoadSummary } from './report.ts';
import { meshdMultiConfig, startBackend, startH2Backend, startMeshdWithConfig, startNginx, type Server } from './servers.ts';
import { runWrk } from './wrk.ts';

/** meshd's service in front of the HTTP/1.1 backend (as in the default scenario) and the one in front of the h2c backend. */
const H1_SERVICE = 'bench';
const H2C_SERVICE = 'bench-h2c';
const THREADS = 1;

type Client = 'h2load' | 'wrk';

interface Row {
  /** Row label: what the client speaks → what the upstream speaks. */
  readonly name: string;
  readonly client: Client;
  /** The server the load talks to, and the CPU group charged as "server CPU". */
  readonly server: Server;
  readonly group: string;
  /** `:authority` (h2load) or Host (wrk): meshd routes by it. */
  readonly authority: string;
  /** The row ratios are taken against (same client protocol, no proxy). */
  readonly direct: string;
}

export function http2BudgetSec(ctx: Pick<ScenarioContext, 'settings'>): number {
  const { settings } = ctx;
  const cells = 7 * SIZES.length;
  const perRunSec = settings.durationSec + 5 + settings.retryDisturbed * (settings.durationSec + 5 + RETRY_PAUSE_MS / 1_000);
  return cells * (settings.repeats * perRunSec + settings.warmupSec + 5) + 60;
}

export async function runHttp2(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tools, pinning, proxyCpu, loadCpu, tmp, started, revision } = ctx;
  const h2load = tools.h2load;
  if (h2load === undefined) throw new Error('h2load (Debian package nghttp2-client) is required for the http2 scenario and could not be installed');

  const h1Port = await freePort();
  const h1Backend = startBackend(tmp, h1Port, loadCpu);
  const h2Port = await freePort();
  const h2Backend = startH2Backend(tmp, h2Port, loadCpu);
  const adminPort = await freePort();
  const meshdPort = await freePort();
  const meshd = startMeshdWithConfig(
    tmp,
    meshdPort,
    meshdMultiConfig(meshdPort, adminPort, [
      { name: H1_SERVICE, endpointPorts: [h1Port] },
      { name: H2C_SERVICE, endpointPorts: [h2Port], extra: ['protocol: h2c'] },
    ]),
    proxyCpu,
  );
  const nginx = tools.nginx !== undefined ? startNginx(tools.nginx, tmp, await freePort(), h1Port, proxyCpu, true) : undefined;

  for (const size of SIZES) {
    await waitReady(h1Backend.proc, h1Port, size.path, size.bytes);
    await waitReadyH2(h2Backend.proc, h2Port, size.path, 'bench', size.bytes);
    await waitReady(meshd.proc, meshdPort, size.path, size.bytes);
    await waitReadyH2(meshd.proc, meshdPort, size.path, H1_SERVICE, size.bytes);
    await waitReadyH2(meshd.proc, meshdPort, size.path, H2C_SERVICE, size.bytes);
    if (nginx !== undefined) await waitReadyH2(nginx.proc, nginx.port, size.path, 'bench', size.bytes);
  }
  log(
    `http2: h2c backend :${h2Port}, HTTP/1.1 backend :${h1Port}, meshd :${meshdPort} (admin :${adminPort})${nginx !== undefined ? `, nginx (h2c) :${nginx.port}` : ''} ready`,
  );

  const rows: Row[] = [
    { name: 'direct h2c', client: 'h2load', server: h2Backend, group: 'h2backend', authority: 'bench', direct: 'direct h2c' },
    { name: 'meshd h2c→h2c', client: 'h2load', server: meshd, group: 'meshd', authority: H2C_SERVICE, direct: 'direct h2c' },
    { name: 'meshd h2c→h1', client: 'h2load', server: meshd, group: 'meshd', authority: H1_SERVICE, direct: 'direct h2c' },
    ...(nginx !== undefined
      ? [{ name: 'nginx h2c→h1', client: 'h2load', server: nginx, group: 'nginx', authority: 'bench', direct: 'direct h2c' } as const]
      : []),
    { name: 'direct h1', client: 'wrk', server: h1Backend, group: 'backend', authority: 'bench', direct: 'direct h1' },
    { name: 'meshd h1→h1', client: 'wrk', server: meshd, group: 'meshd', authority: H1_SERVICE, direct: 'direct h1' },
    { name: 'meshd h1→h2c', client: 'wrk', server: meshd, group: 'meshd', authority: H2C_SERVICE, direct: 'direct h1' },
  ];

  const groups = new Map<string, number[]>([
    ['backend', [h1Backend.proc.pid]],
    ['h2backend', [h2Backend.proc.pid]],
    ['meshd', [meshd.proc.pid]],
  ]);
  if (nginx !== undefined) groups.set('nginx', [nginx.proc.pid, ...childPids(nginx.proc.pid)]);
  const meter = new CpuMeter(groups, loadCpu);
  const watches = ['meshd', 'nginx'].filter((g) => groups.has(g)).map((g) => new RssWatch(g, () => groups.get(g) ?? []));
  for (const w of watches) w.sample();
  const sampler = setInterval(() => {
    for (const w of watches) w.sample();
  }, 250);
  const metricsBefore = await scrapeMetrics(adminPort);

  try {
    const logFile = join(tmp, 'h2load-requests.log');
    /** Requests in flight when load runs through meshd ended (what the load generator abandons on stopping). */
    let meshdInFlightAbandoned = 0;
    const runOnce = async (row: Row, path: string, durationSec: number): Promise<LoadRun> => {
      if (row.group === 'meshd') meshdInFlightAbandoned += row.client === 'h2load' ? settings.h2Clients * settings.h2Streams : settings.connections;
      for (const server of new Set([row.server, h1Backend, h2Backend])) {
        if (server.proc.exit !== undefined) {
          throw new Error(`${server.name} exited (code ${server.proc.exit.code}, signal ${server.proc.exit.signal}):\n${tailOf(server.proc)}`);
        }
      }
      if (row.client === 'h2load') {
        const { value: r, ...cpu } = await meter.measure(row.group, () =>
          runH2load({
            h2load,
            port: row.server.port,
            path,
            authority: row.authority,
            clients: settings.h2Clients,
            streams: settings.h2Streams,
            threads: THREADS,
            durationSec,
            cpu: loadCpu,
            logFile,
          }),
        );
        return { rps: r.requestsPerSec, requests: r.requests, p50Ms: r.p50Ms, p90Ms: r.p90Ms, p99Ms: r.p99Ms, errors: r.failed, non2xx: r.non2xx3xx, ...cpu };
      }
      const { value: r, ...cpu } = await meter.measure(row.group, () =>
        runWrk({
          wrk: tools.wrk,
          port: row.server.port,
          path,
          threads: THREADS,
          connections: settings.connections,
          durationSec,
          cpu: loadCpu,
          host: row.authority,
        }),
      );
      const s = r.socketErrors;
      return {
        rps: r.requestsPerSec,
        requests: r.requests,
        p50Ms: r.p50Ms,
        p90Ms: r.p90Ms,
        p99Ms: r.p99Ms,
        errors: s.connect + s.read + s.write + s.timeout,
        non2xx: r.non2xx3xx,
        ...cpu,
      };
    };

    if (settings.warmupSec > 0) {
      log(`http2 warm-up: ${settings.warmupSec} s per row and size`);
      for (const size of SIZES) for (const row of rows) await runOnce(row, size.path, settings.warmupSec);
    }

    const { results, discarded } = await measureRounds(
      settings,
      SIZES,
      rows,
      (row, size) => `${row.name}/${size.name}`,
      (row, size) => runOnce(row, size.path, settings.durationSec),
      (row, size, r) =>
        `${row.name.padEnd(13)} ${size.name.padEnd(5)} ${Math.round(r.rps).toString().padStart(7)} req/s` +
        `  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms  cpu ${r.serverCpuPct?.toFixed(0) ?? '?'}%` +
        `${r.loadCorePct !== undefined ? ` load-core ${r.loadCorePct.toFixed(0)}%` : ''}${otherNote(r.otherCpuPct)}` +
        `${r.non2xx > 0 ? `  non-2xx ${r.non2xx}` : ''}${r.errors > 0 ? `  errors ${r.errors}` : ''}`,
    );

    clearInterval(sampler);
    for (const w of watches) {
      w.sample();
      w.finish();
    }
    const metricsAfter = await scrapeMetrics(adminPort);

    const summaries = new Map<string, LoadSummary>();
    for (const [key, runs] of results) summaries.set(key, summarizeLoad(runs));
    const find = (row: string, size: string): LoadSummary | undefined => summaries.get(`${row}/${size}`);
    const perCore = (s: LoadSummary | undefined): number => (s !== undefined && s.serverCpuPct > 0 ? s.rps / (s.serverCpuPct / 100) : Number.NaN);

    const lines = [
      '| path | client | size | req/s (median) | p50 | p90 | p99 | vs direct | vs nginx h2c→h1 | vs meshd h1→h1 | server CPU | req/s per server core | load core busy | other CPU | non-2xx/3xx | errors | requests |',
      '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const size of SIZES) {
      for (const row of rows) {
        const s = find(row.name, size.name);
        if (s === undefined) continue;
        const isMeshdH2 = row.group === 'meshd' && row.client === 'h2load';
        lines.push(
          `| ${row.name} | ${row.client} | ${size.name} | ${fmtRps(s.rps)} | ${fmtMs(s.p50Ms)} | ${fmtMs(s.p90Ms)} | ${fmtMs(s.p99Ms)} | ` +
            `${fmtRatio(s.rps, find(row.direct, size.name)?.rps)} | ${isMeshdH2 ? fmtRatio(s.rps, find('nginx h2c→h1', size.name)?.rps) : ''} | ` +
            `${isMeshdH2 ? fmtRatio(s.rps, find('meshd h1→h1', size.name)?.rps) : ''} | ${fmtPct(s.serverCpuPct)} | ${fmtRps(perCore(s))} | ` +
            `${fmtPct(s.loadCorePct)} | ${fmtPct(s.otherCpuPct)} | ${s.non2xx} | ${s.errors} | ${s.requests.toLocaleString('en-US')} |`,
        );
      }
    }

    const problems: string[] = [];
    for (const size of SIZES) {
      for (const row of rows) {
        const s = find(row.name, size.name);
        if (s === undefined) continue;
        if (s.non2xx > 0 || s.errors > 0)
          problems.push(`- ${row.name}/${size.name}: ${s.non2xx} non-2xx/3xx responses, ${s.errors} errors out of ${s.requests} requests`);
        if (s.otherCpuPct > DISTURBED_PCT)
          problems.push(
            `- ${row.name}/${size.name}: other processes used a median ${Math.round(s.otherCpuPct)}% of a core during its runs; its numbers are disturbed`,
          );
      }
    }
    const warnings = meshdWarnings(meshd.proc);
    if (warnings.count > 0) problems.push(`- meshd logged ${warnings.count} line(s) at warn or above: ${warnings.samples.join('; ')}`);
    const loadFailures = [...summaries.values()].reduce((a, s) => a + s.errors + s.non2xx, 0);
    const findings = metricFindings(metricsBefore, metricsAfter, meshdInFlightAbandoned, loadFailures);
    problems.push(...findings.problems);

    const h2loadCmd = `h2load -c${settings.h2Clients} -m${settings.h2Streams} -t${THREADS} -D ${settings.durationSec} -H ':authority: SERVICE' --log-file=…`;
    const wrkCmd = `wrk -t${THREADS} -c${settings.connections} -d${settings.durationSec}s --latency -H 'Host: SERVICE'`;
    const header = [
      `# meshd HTTP/2 (h2c) benchmark${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${revision}, 1 process, log level warn; services \`${H1_SERVICE}\` (HTTP/1.1 backend) and \`${H2C_SERVICE}\` (\`protocol: h2c\`: multiplexed HTTP/2 to the h2c backend, undici Pool with allowH2, up to 100 streams per session)`,
      `- node: ${process.version} (harness, backends and meshd); undici ${packageVersion('undici')}`,
      `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- HTTP/2 load: \`${h2loadCmd}\` (h2c with prior knowledge: ${settings.h2Clients} connections × ${settings.h2Streams} streams = ${settings.h2Clients * settings.h2Streams} requests in flight); ` +
        `percentiles computed from h2load's per-request log (request start to end of response)`,
      `- HTTP/1.1 load (same run, for comparison): \`${wrkCmd}\` (${settings.connections} requests in flight), as in the default http1 scenario`,
      `- ${settings.repeats} repeat(s) per cell (medians shown), ${settings.warmupSec} s warm-up per cell, rows interleaved each round (order rotated)`,
      ...retryNote(settings, discarded),
      `- pinning: ${pinning.enabled ? `proxy under test on CPU ${PROXY_CPU}; both backends and the load generator on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`,
      `- backends: h2c = node:http2 \`createServer\` (prior knowledge, core stream API); h1 = bench/backend.ts (node:http keep-alive); 5-byte body (small) or 16 KiB (16k)`,
      `- paths: "direct h2c" = h2load → h2c backend; "meshd h2c→h2c" = h2load → meshd → h2c backend; "meshd h2c→h1" = h2load → meshd → HTTP/1.1 backend; ` +
        `"nginx h2c→h1" = h2load → nginx (\`listen … http2\`, plaintext; nginx cannot proxy to h2c upstreams) → HTTP/1.1 backend (upstream keepalive 64); ` +
        `"direct h1", "meshd h1→h1", "meshd h1→h2c": wrk over HTTP/1.1`,
      `- references: ${[firstLine(h2load, ['--version']), firstLine(tools.wrk, ['-v']), tools.nginx !== undefined ? firstLine(tools.nginx, ['-v']) : 'nginx: skipped (not installed)'].join('; ')}`,
      `- peak RSS (max of sampled VmRSS and final VmHWM): ${watches.map((w) => `${w.name} ${fmtMiB(w.peakKb)}`).join(', ')}`,
      `- vs direct: req/s against the direct row of the same client protocol; vs nginx h2c→h1 and vs meshd h1→h1: req/s ratios of meshd's h2c rows; ` +
        `the two load generators keep different numbers of requests in flight, so compare h2c and h1 rows by req/s per server core rather than latency; ` +
        `also, h2load's percentiles are per request as measured while wrk's include its coordinated-omission correction (synthetic samples below every latency above twice the mean per-connection interval), which raises wrk's tail figures`,
      `- errors: failed/errored/timed-out streams (h2load) or socket errors (wrk); non-2xx/3xx, errors and requests are totals over all repeats`,
      OTHER_CPU_NOTE,
      `- server CPU: CPU time of the server the load talked to (the proxy; the backend for "direct"), % of one core; req/s per server core = req/s ÷ server CPU; ` +
        `load core busy: ${pinning.enabled ? `CPU ${LOAD_CPU} (backends + load generator) busy share` : 'n/a (not pinned)'}`,
      ...ctx.tools.notes.filter((n) => !n.startsWith('haproxy')).map((n) => `- note: ${n}`),
    ];
    const report = reportText(header, lines, problems, findings.notes);
    return writeReport('http2', started, settings.quick, report);
  } finally {
    clearInterval(sampler);
  }
}
