/**
 * The soak scenario (BENCH_SCENARIO=soak): one meshd (pinned like the http1
 * scenario) under wrk -c64 for BENCH_SOAK_MINUTES (default 10) minutes, in
 * one-minute runs back to back, recording after each minute its resident
 * memory (VmRSS), its high-water mark (VmHWM) and V8's heap (from its own
 * /metrics). Memory is "flat" when the last half of the soak grows by less
 * than 5 % of the RSS: a leak grows with requests served, a plateau does not.
 */
import { availableParallelism, release } from 'node:os';
import { cpuModel, log, metricSum, writeReport, scrapeMetrics, type ScenarioContext, type ScenarioOutcome } from './common.ts';
import { freePort, procStatusKb, waitReady } from './procs.ts';
import { startBackend, startMeshd } from './servers.ts';
import { runWrk } from './wrk.ts';

export function soakMinutes(): number {
  const raw = Number(process.env['BENCH_SOAK_MINUTES'] ?? '10');
  if (!Number.isInteger(raw) || raw < 1 || raw > 120)
    throw new Error(`BENCH_SOAK_MINUTES must be an integer in [1, 120], got "${process.env['BENCH_SOAK_MINUTES']}"`);
  return raw;
}

export function soakBudgetSec(): number {
  return soakMinutes() * 70 + 60;
}

interface Minute {
  minute: number;
  rps: number;
  rssMiB: number;
  hwmMiB: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
}

const mib = (kb: number | undefined): number => (kb ?? Number.NaN) / 1024;

export async function runSoak(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tools, tmp, started, revision, proxyCpu, loadCpu } = ctx;
  const minutes = settings.quick ? 1 : soakMinutes();
  const backendPort = await freePort();
  const backend = startBackend(tmp, backendPort, loadCpu);
  await waitReady(backend.proc, backendPort, '/', 5);
  const adminPort = await freePort();
  const meshd = startMeshd(tmp, await freePort(), adminPort, backendPort, proxyCpu);
  await waitReady(meshd.proc, meshd.port, '/', 5);
  const startRss = mib(procStatusKb(meshd.proc.pid, 'VmRSS'));
  const rows: Minute[] = [];
  for (let minute = 1; minute <= minutes; minute++) {
    const wrk = await runWrk({
      wrk: tools.wrk,
      port: meshd.port,
      path: minute % 2 === 0 ? '/16k' : '/',
      threads: 1,
      connections: settings.connections,
      durationSec: settings.quick ? 10 : 60,
      cpu: loadCpu,
    });
    const metrics = await scrapeMetrics(adminPort);
    const row: Minute = {
      minute,
      rps: wrk.requestsPerSec,
      rssMiB: mib(procStatusKb(meshd.proc.pid, 'VmRSS')),
      hwmMiB: mib(procStatusKb(meshd.proc.pid, 'VmHWM')),
      heapUsedMiB: metricSum(metrics, 'meshd_nodejs_heap_size_used_bytes') / 1048576,
      heapTotalMiB: metricSum(metrics, 'meshd_nodejs_heap_size_total_bytes') / 1048576,
    };
    rows.push(row);
    log(
      `soak minute ${minute}/${minutes}: ${Math.round(row.rps)} req/s, RSS ${row.rssMiB.toFixed(1)} MiB (peak ${row.hwmMiB.toFixed(1)}), heap ${row.heapUsedMiB.toFixed(1)}/${row.heapTotalMiB.toFixed(1)} MiB`,
    );
  }
  const half = rows.slice(Math.floor(rows.length / 2));
  const growth = half.length > 1 ? half[half.length - 1]!.rssMiB - half[0]!.rssMiB : 0;
  const flat = Math.abs(growth) < 0.05 * (half[0]?.rssMiB ?? 1);
  const report = [
    `# meshd memory soak${settings.quick ? ' (quick mode)' : ''}`,
    '',
    `- date: ${started.toISOString()}`,
    `- meshd: ${revision}, 1 process, \`--max-semi-space-size=4\` (as npm start, the unit and the image); node ${process.version}; CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
    `- load: wrk -t1 -c${settings.connections}, ${minutes} × ${settings.quick ? 10 : 60} s back to back, alternating GET / (5 B) and GET /16k; meshd on CPU ${proxyCpu ?? '-'}, backend and wrk on CPU ${loadCpu ?? '-'}`,
    `- RSS before load: ${startRss.toFixed(1)} MiB; after the soak: ${rows.at(-1)?.rssMiB.toFixed(1)} MiB; peak (VmHWM): ${rows.at(-1)?.hwmMiB.toFixed(1)} MiB`,
    `- second half of the soak: RSS ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB → ${flat ? 'flat' : 'GROWING'} (threshold ±5 %)`,
    '',
    '| minute | body | req/s | RSS | peak RSS | V8 heap used | V8 heap total |',
    '|---:|---|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.minute} | ${r.minute % 2 === 0 ? '16k' : 'small'} | ${Math.round(r.rps).toLocaleString('en-US')} | ${r.rssMiB.toFixed(1)} MiB | ${r.hwmMiB.toFixed(1)} MiB | ${r.heapUsedMiB.toFixed(1)} MiB | ${r.heapTotalMiB.toFixed(1)} MiB |`,
    ),
    '',
  ].join('\n');
  return writeReport('soak', started, settings.quick, report);
}
