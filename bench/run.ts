/**
 * meshd benchmarks. `npm run bench` runs the default HTTP/1.1 scenario
 * (meshd against nginx and HAProxy in front of the same node backend, driven
 * by wrk); BENCH_SCENARIO picks another one:
 *
 * - `engines`: forwarding engines side by side (engines.ts: http-proxy-3,
 *   node:http pipe, undici Pool) with meshd and nginx (http1.ts);
 * - `http2`: h2c into meshd, to an h2c and to an HTTP/1.1 backend, driven by
 *   h2load, with nginx's h2c listener as the reference (http2.ts);
 * - `skewed`: the balancing algorithms side by side over one slow and two
 *   fast endpoints (skewed.ts);
 * - `mtls`: two meshd processes (two hosts) with an mTLS hop between them,
 *   against the same two hops in plain HTTP and nginx's TLS hop (mtls.ts);
 * - `latency`: added latency at a fixed 2,000 req/s, open loop (latency.ts);
 * - `workers`: `workers: 1` against `workers: 2`, CPU per request and spread (workers.ts);
 * - `soak`: one meshd's memory over BENCH_SOAK_MINUTES (10) minutes of load (soak.ts);
 * - `micro`: ns per balancer pick, EWMA update and per-response bookkeeping (micro.ts);
 * - `discovery`: 1,000 services × 50 endpoints from EndpointSlices churning 1 % a second (discovery.ts);
 * - `mesh`: Kubernetes mesh mode across two nodes made of network namespaces (mesh.ts);
 * - `traffic`: what a traffic policy (routes, access rules, rate limit, faults) costs meshd per request (traffic.ts);
 * - `tracing`: what OpenTelemetry tracing (off, 1 %, 100 % sampled) costs meshd per request (tracing.ts);
 * - `all`: http1, http2, skewed and mtls one after the other, every table printed.
 *
 * Layout on a 2-core host (when taskset is present): the proxy under test on
 * CPU 0, backends and load generator on CPU 1. Everything listens on
 * 127.0.0.1 only. See bench/README.md.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ALL_SCENARIOS,
  gitRevision,
  LOAD_CPU,
  log,
  PROXY_CPU,
  readSettings,
  writeReport,
  type Scenario,
  type ScenarioContext,
  type ScenarioOutcome,
  type Settings,
} from './common.ts';
import { http1BudgetSec, runHttp1 } from './http1.ts';
import { http2BudgetSec, runHttp2 } from './http2.ts';
import { latencyBudgetSec, runLatency } from './latency.ts';
import { runMicro } from './micro.ts';
import { discoveryBudgetSec, runDiscovery } from './discovery.ts';
import { meshBudgetSec, runMesh } from './mesh.ts';
import { runSoak, soakBudgetSec } from './soak.ts';
import { runWorkers, workersBudgetSec } from './workers.ts';
import { mtlsBudgetSec, runMtls } from './mtls.ts';
import { configurePinning, killAllSync, stopAll } from './procs.ts';
import { runSkewed, skewedBudgetSec } from './skewed.ts';
import { runTracing, tracingBudgetSec } from './tracing.ts';
import { runTraffic, trafficBudgetSec } from './traffic.ts';
import { ensureTools } from './tools.ts';

type Single = Exclude<Scenario, 'all'>;

function scenarioList(settings: Settings): Single[] {
  return settings.scenario === 'all' ? [...ALL_SCENARIOS] : [settings.scenario];
}

function budgetSec(scenario: Single, settings: Settings): number {
  switch (scenario) {
    case 'http1':
      return http1BudgetSec({ settings }, false);
    case 'engines':
      return http1BudgetSec({ settings }, true);
    case 'http2':
      return http2BudgetSec({ settings });
    case 'skewed':
      return skewedBudgetSec({ settings });
    case 'mtls':
      return mtlsBudgetSec({ settings });
    case 'latency':
      return latencyBudgetSec({ settings });
    case 'workers':
      return workersBudgetSec({ settings });
    case 'soak':
      return soakBudgetSec();
    case 'micro':
      return 180;
    case 'discovery':
      return discoveryBudgetSec({ settings });
    case 'mesh':
      return meshBudgetSec({ settings });
    case 'traffic':
      return trafficBudgetSec({ settings });
    case 'tracing':
      return tracingBudgetSec({ settings });
  }
}

function runScenario(scenario: Single, ctx: ScenarioContext): Promise<ScenarioOutcome> {
  switch (scenario) {
    case 'http1':
      return runHttp1(ctx, false);
    case 'engines':
      return runHttp1(ctx, true);
    case 'http2':
      return runHttp2(ctx);
    case 'skewed':
      return runSkewed(ctx);
    case 'mtls':
      return runMtls(ctx);
    case 'latency':
      return runLatency(ctx);
    case 'workers':
      return runWorkers(ctx);
    case 'soak':
      return runSoak(ctx);
    case 'micro':
      return runMicroScenario(ctx);
    case 'discovery':
      return runDiscovery(ctx);
    case 'mesh':
      return runMesh(ctx);
    case 'traffic':
      return runTraffic(ctx);
    case 'tracing':
      return runTracing(ctx);
  }
}

async function runMicroScenario(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const report = await runMicro();
  return writeReport('micro', ctx.started, ctx.settings.quick, report);
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

  const scenarios = scenarioList(settings);
  const tools = ensureTools(log, scenarios.includes('http2'));
  const pinning = configurePinning(!settings.pin);
  const proxyCpu = pinning.enabled ? PROXY_CPU : undefined;
  const loadCpu = pinning.enabled ? LOAD_CPU : undefined;
  log(`pinning: ${pinning.enabled ? `proxies on CPU ${PROXY_CPU}, backends and load generator on CPU ${LOAD_CPU}` : `off (${pinning.reason})`}`);
  log(`scenario: ${settings.scenario}${settings.scenario === 'all' ? ` (${scenarios.join(', ')})` : ''}`);

  // Everything this run may take, generously; past it the run aborts rather than hang.
  const budget = scenarios.reduce((sum, s) => sum + budgetSec(s, settings), 120);
  const watchdog = setTimeout(() => {
    log(`time budget of ${budget} s exceeded; aborting`);
    void cleanup().then(() => process.exit(1));
  }, budget * 1_000);

  const tmp = mkdtempSync(join(tmpdir(), 'meshd-bench-'));
  scratch = tmp;
  chmodSync(tmp, 0o755); // nginx workers may run as an unprivileged user
  const outcomes: ScenarioOutcome[] = [];
  const failures: string[] = [];
  try {
    for (const scenario of scenarios) {
      log(`=== scenario ${scenario} ===`);
      const dir = scenarios.length > 1 ? join(tmp, scenario) : tmp;
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      chmodSync(dir, 0o755);
      try {
        const outcome = await runScenario(scenario, { settings, tools, pinning, proxyCpu, loadCpu, tmp: dir, started, revision });
        outcomes.push(outcome);
        log(`${scenario}: written to ${outcome.file}`);
      } catch (err) {
        // With BENCH_SCENARIO=all the other scenarios still run; the exit code says one failed.
        if (scenarios.length === 1) throw err;
        failures.push(scenario);
        log(`${scenario} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      } finally {
        // Each scenario's servers stop before the next one starts its own on the same CPUs.
        await stopAll();
      }
    }
    for (const outcome of outcomes) process.stdout.write(`\n${outcome.report}\n`);
    for (const outcome of outcomes) log(`written to ${outcome.file}`);
    if (failures.length > 0) log(`failed scenario(s): ${failures.join(', ')}`);
    return failures.length > 0 ? 1 : 0;
  } finally {
    clearTimeout(watchdog);
    await cleanup();
    if (failures.length > 0 || outcomes.length < scenarios.length || settings.keepTmp) log(`logs and configs kept in ${tmp}`);
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
