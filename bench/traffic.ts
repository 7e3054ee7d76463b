/**
 * The traffic scenario: what a realistic traffic policy costs meshd per
 * request on the HTTP/1.1 path. Two meshd processes in front of the same
 * backend, the same service `bench` in each:
 *
 * - `meshd plain`: the http1 scenario's config, no policy;
 * - `meshd policy`: the same service with 10 HTTPRoute rules (PathPrefix
 *   /svc0 … /svc9; the request takes the 10th), a RequestHeaderModifier on
 *   that route, two access deny rules and a config fault that never match,
 *   and a service rate limit that never refuses.
 *
 * wrk sends `GET /svc9/items` to every row (`direct` too). Before measuring,
 * the policy is shown to be in force (a DELETE and /admin/… are refused,
 * a POST with the fault's header gets its 503, the route counts requests). Same pinning,
 * warm-up, repeats and interleaving as http1; "policy / plain" compares
 * medians, "added" is policy − plain in the same round, median over rounds.
 */
import { mkdirSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
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
import { firstLine, freePort, tailOf, waitReady } from './procs.ts';
import { fmtMiB, fmtMs, fmtPct, fmtRatio, fmtRps, median } from './report.ts';
import { meshdConfig, startBackend, startMeshdWithConfig, type Server } from './servers.ts';
import { runWrk, type WrkResult } from './wrk.ts';

const ROWS = ['direct', 'meshd plain', 'meshd policy'] as const;
type Row = (typeof ROWS)[number];
type MeshdRow = Exclude<Row, 'direct'>;
const MESHD_ROWS: readonly MeshdRow[] = ['meshd plain', 'meshd policy'];

const THREADS = 1;
const SERVICE = 'bench';
const ROUTES = 10;
/** The last route written; wrk's path falls under its prefix only. */
const MATCHED_ROUTE = `svc${ROUTES - 1}`;
const PATH = `/${MATCHED_ROUTE}/items`;
const FAULT_HEADER = 'x-bench-fault';
const FAULT_NAME = 'never';

/** The policy's keys under `services.bench`, indented for that place (YAML lines). */
function trafficPolicyLines(): string[] {
  const routes: string[] = [];
  for (let i = 0; i < ROUTES; i++) {
    routes.push(`      - name: svc${i}`, `        matches: [ { path: { type: PathPrefix, value: /svc${i} } } ]`);
  }
  routes.push(
    '        filters:',
    `          - { type: RequestHeaderModifier, requestHeaderModifier: { set: [ { name: x-route, value: ${MATCHED_ROUTE} } ] } }`,
  );
  return [
    '    routes:',
    ...routes,
    '    access:',
    '      - { action: deny, methods: [ DELETE ] }',
    '      - { action: deny, paths: [ /admin, /admin/* ] }',
    '    rateLimit: { requestsPerSecond: 10000000, burst: 10000000, per: service }',
    '    faults:',
    `      - { name: ${FAULT_NAME}, match: { headers: [ { name: ${FAULT_HEADER}, value: "1" } ] }, abort: { status: 503 }, duration: 1h }`,
  ];
}

/** Seconds this scenario may take at most with these settings (for the run's time budget). */
export function trafficBudgetSec(ctx: Pick<ScenarioContext, 'settings'>): number {
  const { settings } = ctx;
  const perRunSec = settings.durationSec + 5 + settings.retryDisturbed * (settings.durationSec + 5 + RETRY_PAUSE_MS / 1_000);
  return ROWS.length * (settings.repeats * perRunSec + settings.warmupSec + 5) + 60;
}

interface Run {
  readonly wrk: WrkResult;
  /** CPU of the server wrk talked to (the backend for direct), % of one core. */
  readonly serverCpuPct: number | undefined;
  /** That server's CPU time over the run ÷ the requests wrk completed, µs. */
  readonly cpuUsPerRequest: number | undefined;
  readonly loadCorePct: number | undefined;
  readonly otherCpuPct: number | undefined;
}

const socketErrors = (r: WrkResult): number => r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
const finite = (values: readonly (number | undefined)[]): number[] => values.filter((v): v is number => v !== undefined && Number.isFinite(v));
const range = (values: readonly number[], fmt: (v: number) => string): string =>
  values.length === 0 ? 'n/a' : `${fmt(Math.min(...values))} – ${fmt(Math.max(...values))}`;
const us = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');
const signedUs = (v: number): string => (Number.isFinite(v) ? `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(1)}` : 'n/a');

/** One request on a fresh connection: status and response header fields (the access check needs other methods than GET). */
function ask(port: number, method: string, path: string, headers: Readonly<Record<string, string>>): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { ...headers }, agent: false, timeout: 5_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout after 5000 ms')));
    req.on('error', reject);
    req.end();
  });
}

/** Throws unless the policy meshd answers `method path` (with `headers`) with `status` and, when given, the response field `field`. */
async function expectAnswer(
  port: number,
  method: string,
  path: string,
  headers: Readonly<Record<string, string>>,
  status: number,
  field?: readonly [string, string],
): Promise<void> {
  const answer = await ask(port, method, path, { host: SERVICE, ...headers });
  const got = field === undefined ? undefined : answer.headers[field[0]];
  if (answer.status !== status || (field !== undefined && got !== field[1])) {
    throw new Error(
      `policy not in force: ${method} ${path} ${JSON.stringify(headers)} answered ${answer.status}` +
        `${field !== undefined ? ` with ${field[0]}: ${String(got)}` : ''}, expected ${status}${field !== undefined ? ` with ${field[0]}: ${field[1]}` : ''}`,
    );
  }
}

export async function runTraffic(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tools, pinning, proxyCpu, loadCpu, tmp, started, revision } = ctx;
  const backendPort = await freePort();
  const backend = startBackend(tmp, backendPort, loadCpu);
  await waitReady(backend.proc, backendPort, PATH, 5);

  const servers = new Map<Row, Server>([['direct', backend]]);
  const admin = new Map<MeshdRow, number>();
  for (const row of MESHD_ROWS) {
    const dir = join(tmp, row.replace(' ', '-'));
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const port = await freePort();
    const adminPort = await freePort();
    admin.set(row, adminPort);
    const base = meshdConfig(port, adminPort, backendPort);
    const yaml = row === 'meshd policy' ? `${base.trimEnd()}\n${trafficPolicyLines().join('\n')}\n` : base;
    servers.set(row, startMeshdWithConfig(dir, port, yaml, proxyCpu));
  }
  for (const [row, server] of servers) {
    await waitReady(server.proc, server.port, PATH, 5);
    log(`${row} ready on 127.0.0.1:${server.port} (pid ${server.proc.pid})`);
  }
  const policy = servers.get('meshd policy') as Server;
  const policyAdmin = admin.get('meshd policy') as number;

  // The policy is in force: the deny rules refuse, the fault answers its header, the route counts.
  const routeKey = [`service="${SERVICE}"`, `route="${MATCHED_ROUTE}"`];
  const routeBefore = metricSum(await scrapeMetrics(policyAdmin), 'meshd_route_requests_total', routeKey);
  await expectAnswer(policy.port, 'DELETE', PATH, {}, 403);
  await expectAnswer(policy.port, 'GET', '/admin/x', {}, 403);
  // POST: not retried, so the injected 503 counts once in the endpoint's statistics (a GET would be tried 3 times).
  await expectAnswer(policy.port, 'POST', PATH, { [FAULT_HEADER]: '1' }, 503, ['x-meshd-fault', FAULT_NAME]);
  await expectAnswer(policy.port, 'GET', PATH, {}, 200);
  const checked = await scrapeMetrics(policyAdmin);
  if (metricSum(checked, 'meshd_route_requests_total', routeKey) <= routeBefore) {
    throw new Error(`policy not in force: GET ${PATH} did not count on route ${MATCHED_ROUTE} (meshd_route_requests_total)`);
  }
  log(`meshd policy: deny rules, fault and route ${MATCHED_ROUTE} answer as configured`);

  const groups = new Map<Row, number[]>();
  for (const [row, server] of servers) groups.set(row, [server.proc.pid]);
  const meter = new CpuMeter(groups, loadCpu);
  const watches = MESHD_ROWS.map((row) => new RssWatch(row, () => groups.get(row) ?? []));
  for (const w of watches) w.sample();
  const sampler = setInterval(() => {
    for (const w of watches) w.sample();
  }, 250);
  const metricsBefore = new Map<MeshdRow, MetricSamples | undefined>();
  for (const row of MESHD_ROWS) metricsBefore.set(row, row === 'meshd policy' ? checked : await scrapeMetrics(admin.get(row) as number));

  try {
    /** Requests wrk had in flight when its runs through each meshd ended (warm-ups included). */
    const abandoned = new Map<MeshdRow, number>(MESHD_ROWS.map((r) => [r, 0]));
    const wrkRun = async (row: Row, durationSec: number): Promise<Run> => {
      const server = servers.get(row) as Server;
      for (const s of [backend, server]) {
        if (s.proc.exit !== undefined) throw new Error(`${s.name} exited (code ${s.proc.exit.code}, signal ${s.proc.exit.signal}):\n${tailOf(s.proc)}`);
      }
      const ticks0 = meter.groupTicks(row);
      const { value: wrk, ...cpu } = await meter.measure(row, () =>
        runWrk({ wrk: tools.wrk, port: server.port, path: PATH, threads: THREADS, connections: settings.connections, durationSec, cpu: loadCpu }),
      );
      const ticks1 = meter.groupTicks(row);
      if (row !== 'direct') abandoned.set(row, (abandoned.get(row) ?? 0) + settings.connections);
      const cpuUsPerRequest =
        ticks0 === undefined || ticks1 === undefined || !(wrk.requests > 0) ? undefined : ((ticks1 - ticks0) / CLOCK_TICKS_PER_SEC / wrk.requests) * 1e6;
      return { wrk, cpuUsPerRequest, ...cpu };
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
        `${row.padEnd(12)} ${Math.round(r.wrk.requestsPerSec).toString().padStart(7)} req/s  p50 ${r.wrk.p50Ms.toFixed(3)} ms  p99 ${r.wrk.p99Ms.toFixed(3)} ms` +
        `  cpu ${r.serverCpuPct?.toFixed(0) ?? '?'}% ${r.cpuUsPerRequest?.toFixed(1) ?? '?'} µs/request` +
        `${r.loadCorePct !== undefined ? ` load-core ${r.loadCorePct.toFixed(0)}%` : ''}${otherNote(r.otherCpuPct)}` +
        `${r.wrk.non2xx3xx > 0 ? `  non-2xx ${r.wrk.non2xx3xx}` : ''}${socketErrors(r.wrk) > 0 ? `  socket errors ${socketErrors(r.wrk)}` : ''}`,
    );
    clearInterval(sampler);
    for (const w of watches) {
      w.sample();
      w.finish();
    }
    const metricsAfter = new Map<MeshdRow, MetricSamples | undefined>();
    for (const row of MESHD_ROWS) metricsAfter.set(row, await scrapeMetrics(admin.get(row) as number));

    const runsOf = (row: Row): Run[] => results.get(row) ?? [];
    const med = (row: Row, pick: (r: Run) => number | undefined): number => median(finite(runsOf(row).map(pick)));
    const rps = (row: Row): number => med(row, (r) => r.wrk.requestsPerSec);
    const cpuUs = (row: Row): number => med(row, (r) => r.cpuUsPerRequest);
    /** policy against plain round by round (measureRounds keeps one run per row and round). */
    const paired = (combine: (policyRun: Run, plainRun: Run) => number | undefined): number[] => {
      const plain = runsOf('meshd plain');
      return finite(
        runsOf('meshd policy').map((r, round) => {
          const p = plain[round];
          return p === undefined ? undefined : combine(r, p);
        }),
      );
    };
    const addedUs = paired((a, b) => (a.cpuUsPerRequest === undefined || b.cpuUsPerRequest === undefined ? undefined : a.cpuUsPerRequest - b.cpuUsPerRequest));
    const cpuRatios = paired((a, b) =>
      a.cpuUsPerRequest === undefined || b.cpuUsPerRequest === undefined ? undefined : a.cpuUsPerRequest / b.cpuUsPerRequest,
    );
    const rpsRatios = paired((a, b) => a.wrk.requestsPerSec / b.wrk.requestsPerSec);

    const lines = [
      '| target | req/s | p50 | p99 | vs direct | server CPU | meshd CPU µs/request | policy / plain req/s | policy / plain CPU per request | added µs/request | load core busy | other CPU | non-2xx/3xx | socket errors | requests |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const row of ROWS) {
      const runs = runsOf(row);
      const isPolicy = row === 'meshd policy';
      lines.push(
        `| ${row} | ${fmtRps(rps(row))} | ${fmtMs(med(row, (r) => r.wrk.p50Ms))} | ${fmtMs(med(row, (r) => r.wrk.p99Ms))} | ${fmtRatio(rps(row), rps('direct'))} | ` +
          `${fmtPct(med(row, (r) => r.serverCpuPct))} | ${row === 'direct' ? '—' : us(cpuUs(row))} | ` +
          `${isPolicy ? fmtRatio(rps(row), rps('meshd plain')) : ''} | ${isPolicy ? fmtRatio(cpuUs(row), cpuUs('meshd plain')) : ''} | ` +
          `${isPolicy ? signedUs(median(addedUs)) : ''} | ${fmtPct(med(row, (r) => r.loadCorePct))} | ${fmtPct(med(row, (r) => r.otherCpuPct))} | ` +
          `${runs.reduce((n, r) => n + r.wrk.non2xx3xx, 0)} | ${runs.reduce((n, r) => n + socketErrors(r.wrk), 0)} | ` +
          `${runs.reduce((n, r) => n + r.wrk.requests, 0).toLocaleString('en-US')} |`,
      );
    }
    const spread = [
      '## Spread over rounds',
      '',
      '| target | req/s min – max | p99 min – max | meshd CPU µs/request min – max | other CPU max |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...ROWS.map((row) => {
        const runs = runsOf(row);
        const rpsValues = runs.map((r) => r.wrk.requestsPerSec);
        const p99Values = runs.map((r) => r.wrk.p99Ms);
        const cpuRange = row === 'direct' ? '—' : range(finite(runs.map((r) => r.cpuUsPerRequest)), us);
        const otherMax = Math.max(...finite(runs.map((r) => r.otherCpuPct)));
        return `| ${row} | ${range(rpsValues, fmtRps)} | ${range(p99Values, fmtMs)} | ${cpuRange} | ${fmtPct(otherMax)} |`;
      }),
      '',
      `- policy / plain, round by round: req/s ${rpsRatios.map((v) => `${v.toFixed(2)}×`).join(', ')}; CPU per request ${cpuRatios.map((v) => `${v.toFixed(2)}×`).join(', ')}; ` +
        `added µs/request ${addedUs.map(signedUs).join(', ')} (median ${signedUs(median(addedUs))})`,
    ];

    const problems: string[] = [];
    const notes: string[] = [];
    for (const row of ROWS) {
      const runs = runsOf(row);
      const non2xx = runs.reduce((n, r) => n + r.wrk.non2xx3xx, 0);
      const errors = runs.reduce((n, r) => n + socketErrors(r.wrk), 0);
      if (non2xx > 0 || errors > 0) problems.push(`- ${row}: ${non2xx} non-2xx/3xx responses, ${errors} socket errors`);
      const other = med(row, (r) => r.otherCpuPct);
      if (other > DISTURBED_PCT)
        problems.push(`- ${row}: other processes used a median ${Math.round(other)}% of a core during its runs; its numbers are disturbed`);
    }
    for (const row of MESHD_ROWS) {
      const server = servers.get(row) as Server;
      const warnings = meshdWarnings(server.proc);
      // The two refusals of the check before measuring are logged at warn; anything else is a problem.
      const checks = warnings.samples.filter((w) => w.includes('refused: access rule'));
      const expected = checks.reduce((n, w) => n + Number(/^(\d+)×/.exec(w)?.[1] ?? 0), 0);
      if (warnings.count > expected) {
        problems.push(
          `- ${row} logged ${warnings.count - expected} unexpected line(s) at warn or above: ${warnings.samples.filter((w) => !checks.includes(w)).join('; ')}`,
        );
      }
      const failures = runsOf(row).reduce((n, r) => n + r.wrk.non2xx3xx + socketErrors(r.wrk), 0);
      const findings = metricFindings(metricsBefore.get(row), metricsAfter.get(row), abandoned.get(row) ?? 0, failures);
      problems.push(...findings.problems.map((p) => p.replace(/^- /, `- ${row}: `)));
      notes.push(...findings.notes.map((n) => n.replace(/^- /, `- ${row}: `)));
    }
    const policyBefore = metricsBefore.get('meshd policy');
    const policyAfter = metricsAfter.get('meshd policy');
    const delta = (name: string, match: readonly string[] = []): number => metricSum(policyAfter, name, match) - metricSum(policyBefore, name, match);
    const routed = delta('meshd_route_requests_total', routeKey);
    const measured = runsOf('meshd policy').reduce((n, r) => n + r.wrk.requests, 0);
    if (routed < measured)
      problems.push(`- meshd policy: route ${MATCHED_ROUTE} counted ${routed} requests, fewer than wrk's ${measured} measured ones: the route was not taken`);
    const limited = delta('meshd_rate_limited_total');
    const injected = delta('meshd_faults_injected_total');
    const refused = delta('meshd_authorization_total', ['result="denied"']);
    if (limited > 0 || injected > 0 || refused > 0) {
      problems.push(
        `- meshd policy refused or faulted load requests: ${limited} rate-limited, ${injected} fault injections, ${refused} access decisions counted`,
      );
    }

    const wrkCmd = `wrk -t${THREADS} -c${settings.connections} -d${settings.durationSec}s --latency -H 'Host: ${SERVICE}' http://127.0.0.1:PORT${PATH}`;
    const header = [
      `# meshd traffic-policy cost, HTTP/1.1${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${revision}, two processes (plain, policy), 1 worker each, log level warn`,
      `- node: ${process.version} (harness, backend and meshd)`,
      `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- load: \`${wrkCmd}\` (5-byte answers), ${settings.repeats} repeat(s) per target (medians shown), ${settings.warmupSec} s warm-up per target, targets interleaved each round (order rotated); ${firstLine(tools.wrk, ['-v'])}`,
      ...retryNote(settings, discarded),
      `- pinning: ${pinning.enabled ? `both meshd on CPU ${PROXY_CPU} (one under load at a time); backend and wrk on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`,
      `- meshd plain: the http1 scenario's config (service \`${SERVICE}\`, one endpoint); meshd policy: the same plus the policy below. ` +
        `Checked before measuring: DELETE and GET /admin/x answered 403, a POST with \`${FAULT_HEADER}: 1\` answered 503 (fault \`${FAULT_NAME}\`), GET ${PATH} counted on route \`${MATCHED_ROUTE}\``,
      `- policy in the measured runs: route \`${MATCHED_ROUTE}\` took ${routed.toLocaleString('en-US')} requests (warm-ups and any discarded runs included; wrk completed ${measured.toLocaleString('en-US')} in the measured runs); ` +
        `${limited} rate-limited, ${injected} faults injected, ${refused} access refusals`,
      `- meshd CPU µs/request: that meshd's user+system time over the run (/proc/PID/stat) ÷ the requests wrk completed in it — the cost of the path whatever bounds the rate; ` +
        `policy / plain: ratios of the medians; added µs/request: policy − plain in the same round, median over rounds`,
      `- server CPU: CPU time of the server wrk talked to (meshd; the backend for direct), % of one core; load core busy: ${pinning.enabled ? `CPU ${LOAD_CPU} (backend + wrk) busy share` : 'n/a (not pinned)'}`,
      `- peak RSS (max of sampled VmRSS and final VmHWM): ${watches.map((w) => `${w.name} ${fmtMiB(w.peakKb)}`).join(', ')}`,
      OTHER_CPU_NOTE,
      '',
      '```yaml',
      `services:`,
      `  ${SERVICE}:`,
      '    endpoints: [ { address: 127.0.0.1:BACKEND } ]',
      ...trafficPolicyLines(),
      '```',
    ];
    return writeReport('traffic', started, settings.quick, reportText(header, [...lines, '', ...spread], problems, notes));
  } finally {
    clearInterval(sampler);
  }
}
