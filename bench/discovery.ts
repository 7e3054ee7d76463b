/**
 * The discovery scenario (BENCH_SCENARIO=discovery): one meshd with 1,000
 * services of 50 endpoints each, discovered from Kubernetes EndpointSlices
 * (the stand-in API server of the tests, run by this harness on the load
 * CPU), while 1 % of all endpoints change every second. It reports meshd's
 * CPU and memory idle with the full set, during the churn, and the time from
 * a change at the API server to the balancer using it: a probe service's
 * only endpoint flips between two real backends, and requests through meshd
 * show when the new one answers.
 */
import { availableParallelism, release } from 'node:os';
import { startFakeKubeApi, type FakeKubeApi, type FakeSlice } from '../test/helpers/fake-kube-api.ts';
import { cpuModel, log, metricSum, reportText, scrapeMetrics, writeReport, type ScenarioContext, type ScenarioOutcome } from './common.ts';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpuTicks, freePort, httpGet, procStatusKb, sleep } from './procs.ts';
import { startMeshdWithConfig } from './servers.ts';

const SERVICES = 1_000;
const ENDPOINTS = 50;
/** 1 % of all endpoints per second: 500 changes, as 100 services × 5 endpoints. */
const CHANGED_SERVICES_PER_SECOND = 100;
const CHANGED_PER_SERVICE = 5;
const TICKS_PER_SECOND = 100; // /proc clock ticks

export function discoveryBudgetSec(ctx: Pick<ScenarioContext, 'settings'>): number {
  return (ctx.settings.quick ? 20 : 60) + 240;
}

const ip = (service: number, index: number, generation: number): string =>
  `10.${(service >> 8) & 255}.${service & 255}.${((index + generation * 7) % 250) + 1}`;

function serviceSlice(service: number, generation: number[]): FakeSlice {
  return {
    name: `svc-${service}`,
    service: `svc-${service}`,
    ports: [{ name: 'http', port: 8080 }],
    endpoints: Array.from({ length: ENDPOINTS }, (_, k) => ({
      ip: ip(service, k, k < CHANGED_PER_SERVICE ? generation[service]! : 0),
      zone: `z${k % 3}`,
      nodeName: `node-${k % 20}`,
    })),
  };
}

export async function runDiscovery(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tmp, started, revision, proxyCpu, loadCpu } = ctx;
  const churnSec = settings.quick ? 15 : 60;
  const api: FakeKubeApi = await startFakeKubeApi();
  const generation = Array.from({ length: SERVICES }, () => 0);
  for (let i = 0; i < SERVICES; i++) api.applySlice(serviceSlice(i, generation));
  // The probe: one endpoint that flips between two backends (in this harness) that say their port.
  const backends = await Promise.all([0, 1].map(() => portServer()));
  const [portA, portB] = backends.map((b) => b.port) as [number, number];
  const probeSlice = (port: number): FakeSlice => ({ name: 'probe', service: 'probe', ports: [{ name: 'http', port }], endpoints: [{ ip: '127.0.0.1' }] });
  api.applySlice(probeSlice(portA));

  const port = await freePort();
  const adminPort = await freePort();
  const lines = [`admin: { listen: 127.0.0.1:${adminPort} }`, `outbound: { listen: 127.0.0.1:${port} }`, 'log: { level: warn }', 'services:'];
  for (let i = 0; i < SERVICES; i++) lines.push(`  svc-${i}: { discovery: { kubernetes: { service: svc-${i}, port: http, kubeconfig: ${api.kubeconfig} } } }`);
  lines.push(`  probe: { discovery: { kubernetes: { service: probe, kubeconfig: ${api.kubeconfig} } }, retries: { attempts: 1 } }`);
  const t0 = performance.now();
  const meshd = startMeshdWithConfig(tmp, port, `${lines.join('\n')}\n`, proxyCpu);
  const wanted = SERVICES * ENDPOINTS + 1;
  for (;;) {
    if (meshd.proc.exit !== undefined) throw new Error(`meshd exited (code ${meshd.proc.exit.code}) while discovering`);
    const known = metricSum(await scrapeMetrics(adminPort).catch(() => undefined), 'meshd_endpoints');
    if (known >= wanted) break;
    if (performance.now() - t0 > 180_000) throw new Error(`meshd knows ${known} of ${wanted} endpoints after 180 s`);
    await sleep(250);
  }
  const syncSec = (performance.now() - t0) / 1000;
  log(`discovery: ${wanted} endpoints of ${SERVICES + 1} services known after ${syncSec.toFixed(1)} s`);

  const pid = meshd.proc.pid;
  const sample = (): { ticks: number; at: number; rssMiB: number } => ({
    ticks: cpuTicks(pid) ?? Number.NaN,
    at: performance.now(),
    rssMiB: (procStatusKb(pid, 'VmRSS') ?? Number.NaN) / 1024,
  });
  const cpuPct = (a: ReturnType<typeof sample>, b: ReturnType<typeof sample>): number =>
    ((b.ticks - a.ticks) / TICKS_PER_SECOND / ((b.at - a.at) / 1000)) * 100;

  await sleep(5_000);
  const idleStart = sample();
  await sleep(10_000);
  const idleEnd = sample();

  // Churn: 1 % of the endpoints per second, spread over ten batches a second.
  let changes = 0;
  const churn = setInterval(() => {
    for (let n = 0; n < CHANGED_SERVICES_PER_SECOND / 10; n++) {
      const s = Math.floor(Math.random() * SERVICES);
      generation[s]!++;
      api.applySlice(serviceSlice(s, generation));
      changes += CHANGED_PER_SERVICE;
    }
  }, 100);
  const churnStart = sample();
  let peakRss = churnStart.rssMiB;
  const propagation: number[] = [];
  const churnUntil = performance.now() + churnSec * 1000;
  let current = portA;
  while (performance.now() < churnUntil) {
    const next = current === portA ? portB : portA;
    const changedAt = performance.now();
    api.applySlice(probeSlice(next));
    for (;;) {
      const answer = await httpGet(port, '/', 2_000, { host: 'probe' }).catch(() => undefined);
      if (answer?.body.includes(String(next)) === true) break;
      if (performance.now() - changedAt > 10_000) throw new Error('the probe change did not reach the balancer within 10 s');
      await sleep(2);
    }
    propagation.push(performance.now() - changedAt);
    current = next;
    peakRss = Math.max(peakRss, sample().rssMiB);
    await sleep(1_000);
  }
  clearInterval(churn);
  const churnEnd = sample();
  const metrics = await scrapeMetrics(adminPort);
  const updates = metricSum(metrics, 'meshd_discovery_updates_total');
  const heapMiB = metricSum(metrics, 'meshd_nodejs_heap_size_used_bytes') / 1048576;
  await api.close();
  for (const b of backends) b.server.close();

  propagation.sort((x, y) => x - y);
  const q = (p: number): number => propagation[Math.min(propagation.length - 1, Math.floor(propagation.length * p))] ?? Number.NaN;
  const header = [
    `# meshd discovery at scale${settings.quick ? ' (quick mode)' : ''}`,
    '',
    `- date: ${started.toISOString()}`,
    `- meshd: ${revision}, 1 process, log level warn; node ${process.version}; CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
    `- ${SERVICES} services × ${ENDPOINTS} endpoints from Kubernetes EndpointSlices (one list + watch of the namespace shared by every service, the tests' stand-in API server in this harness on CPU ${loadCpu ?? '-'}; meshd on CPU ${proxyCpu ?? '-'})`,
    `- churn: ${CHANGED_SERVICES_PER_SECOND * CHANGED_PER_SERVICE} endpoint changes per second (1 %) for ${churnSec} s; ${changes} in all`,
  ];
  const body = [
    '| measure | value |',
    '| --- | ---: |',
    `| time to know all ${wanted} endpoints from start | ${syncSec.toFixed(1)} s |`,
    `| meshd CPU, idle with the full set | ${cpuPct(idleStart, idleEnd).toFixed(1)} % of a core |`,
    `| meshd CPU, during the churn | ${cpuPct(churnStart, churnEnd).toFixed(1)} % of a core |`,
    `| meshd RSS, idle / peak during the churn | ${idleEnd.rssMiB.toFixed(0)} / ${peakRss.toFixed(0)} MiB |`,
    `| V8 heap used after the churn | ${heapMiB.toFixed(0)} MiB |`,
    `| change at the API server → balancer uses it (n = ${propagation.length}) | p50 ${q(0.5).toFixed(1)} ms, p90 ${q(0.9).toFixed(1)} ms, max ${q(1).toFixed(1)} ms |`,
    `| discovery answers counted (meshd_discovery_updates_total) | ${updates} |`,
  ];
  const report = reportText(
    header,
    body,
    [],
    [
      "Propagation is measured end to end: the probe service's only endpoint moves to the other backend, and requests through meshd (every 2 ms) show when the new one answers; it includes the watch event, the endpoint set, the balancer and one request.",
    ],
  );
  return writeReport('discovery', started, settings.quick, report);
}

/** A backend that answers with its own port. */
async function portServer(): Promise<{ port: number; server: Server }> {
  const server = createServer((_req, res) => res.end(String((server.address() as AddressInfo).port)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, server };
}
