/**
 * The `mtls` scenario: what meshd's mTLS hop between two hosts costs. Two
 * meshd processes stand for two hosts; wrk drives HTTP/1.1 into meshd A's
 * outbound listener, which forwards either in plain HTTP to meshd B's
 * outbound listener (the "plain two-hop" row) or over mTLS to meshd B's
 * inbound listener (the "mTLS hop" row); both end at the same backend. nginx
 * A → HTTPS with a client certificate → nginx B is the reference, and
 * "direct" (wrk → backend) the floor. Certificates come from meshd's own PKI
 * CLI. See bench/README.md.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CpuMeter,
  cpuModel,
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
  writeReport,
  retryNote,
  RssWatch,
  scrapeMetrics,
  type MetricSamples,
  type ScenarioContext,
  type ScenarioOutcome,
} from './common.ts';
import { childPids, findExecutable, firstLine, freePort, tailOf, waitReady } from './procs.ts';
import { fmtMiB, fmtMs, fmtPct, fmtRatio, fmtRps, median, SIZES, summarizeLoad, type LoadRun, type LoadSummary } from './report.ts';
import {
  nginxTlsClientConfig,
  nginxTlsServerConfig,
  startBackend,
  startMeshdWithConfig,
  startNginxWithConfig,
  type NginxTlsFiles,
  type Server,
} from './servers.ts';
import { runWrk } from './wrk.ts';

const REPO_DIR = fileURLToPath(new URL('..', import.meta.url));
const THREADS = 1;
const TRUST_DOMAIN = 'bench.example';
const NGINX_SERVER_NAME = `nginx-b.${TRUST_DOMAIN}`;

type RowName = 'direct' | 'plain two-hop' | 'mTLS hop' | 'nginx TLS hop';

interface Row {
  readonly name: RowName;
  /** The server wrk talks to. */
  readonly entry: Server;
  /** Host header wrk sends (meshd routes by it). */
  readonly host: string;
  /** CPU groups charged as hop 1 and hop 2 (direct: the backend, no hop 2). */
  readonly hop1: string;
  readonly hop2: string | undefined;
  /** meshd processes the load passes through (for the metrics' in-flight bound). */
  readonly meshds: readonly ('a' | 'b')[];
}

/** A load run plus the CPU of the second hop and, for the mTLS row, meshd B's inbound TLS handshakes meanwhile. */
interface HopRun extends LoadRun {
  readonly hop2CpuPct: number | undefined;
  readonly handshakes: { readonly full: number; readonly resumed: number } | undefined;
}

export function mtlsBudgetSec(ctx: Pick<ScenarioContext, 'settings'>): number {
  const { settings } = ctx;
  const cells = 4 * SIZES.length;
  const perRunSec = settings.durationSec + 6 + settings.retryDisturbed * (settings.durationSec + 6 + RETRY_PAUSE_MS / 1_000);
  return cells * (settings.repeats * perRunSec + settings.warmupSec + 5) + 90;
}

function run(cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, cwd: REPO_DIR });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  return `${r.stdout}${r.stderr}`;
}

interface Pki {
  readonly dir: string;
  /** Each with cert.pem, key.pem, ca.pem. */
  readonly a: string;
  readonly b: string;
  /** nginx's files, or undefined when openssl is missing (nginx B needs a DNS-named server certificate). */
  readonly nginx: NginxTlsFiles | undefined;
  readonly note: string;
}

/**
 * A CA and the two hosts' certificates from meshd's CLI; for nginx, B's server
 * certificate gets a DNS SAN (nginx verifies names, not SPIFFE URIs), signed
 * by the same CA with openssl, same key type (RSA 2048); nginx A's client
 * certificate is meshd A's.
 */
function makePki(tmp: string): Pki {
  const dir = join(tmp, 'pki');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const meshd = (args: readonly string[]): string => run(process.execPath, [join(REPO_DIR, 'bin', 'meshd.js'), ...args]);
  const ca = join(dir, 'ca');
  meshd(['ca', 'init', '--dir', ca, '--trust-domain', TRUST_DOMAIN]);
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  meshd(['cert', 'issue', '--ca', ca, '--identity', `spiffe://${TRUST_DOMAIN}/host/a`, '--ttl', '24h', '--out', a]);
  meshd(['cert', 'issue', '--ca', ca, '--identity', `spiffe://${TRUST_DOMAIN}/host/b`, '--ttl', '24h', '--out', b]);
  const openssl = findExecutable('openssl');
  if (openssl === undefined) return { dir, a, b, nginx: undefined, note: 'openssl not found: no certificate for nginx B, nginx row skipped' };
  const nb = join(dir, 'nginx-b');
  mkdirSync(nb, { recursive: true, mode: 0o755 });
  const key = join(nb, 'key.pem');
  const csr = join(nb, 'req.csr');
  const cert = join(nb, 'cert.pem');
  const ext = join(nb, 'ext.cnf');
  writeFileSync(ext, `subjectAltName=DNS:${NGINX_SERVER_NAME}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n`);
  run(openssl, ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-subj', `/CN=${NGINX_SERVER_NAME}`, '-out', csr]);
  run(openssl, [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    join(ca, 'ca.pem'),
    '-CAkey',
    join(ca, 'ca-key.pem'),
    '-CAcreateserial',
    '-days',
    '1',
    '-sha256',
    '-extfile',
    ext,
    '-out',
    cert,
  ]);
  return {
    dir,
    a,
    b,
    nginx: {
      clientCert: join(a, 'cert.pem'),
      clientKey: join(a, 'key.pem'),
      serverCert: cert,
      serverKey: key,
      serverName: NGINX_SERVER_NAME,
      ca: join(a, 'ca.pem'),
    },
    note: `nginx B's server certificate: openssl, RSA 2048, DNS SAN ${NGINX_SERVER_NAME}, signed by the same CA; nginx A's client certificate is meshd A's`,
  };
}

/** The 24 h certificates would trip meshd's default 24 h expiry warning at start; warn only in the last hour instead. */
const tlsLine = (certs: string): string =>
  `tls: { cert: ${join(certs, 'cert.pem')}, key: ${join(certs, 'key.pem')}, ca: ${join(certs, 'ca.pem')}, expiryWarning: 1h }`;

function meshdBConfig(adminPort: number, outboundPort: number, inboundPort: number, backendPort: number, certs: string): string {
  return [
    `admin: { listen: 127.0.0.1:${adminPort} }`,
    `outbound: { listen: 127.0.0.1:${outboundPort} }`,
    `inbound: { listen: 127.0.0.1:${inboundPort} }`,
    'log: { level: warn }',
    tlsLine(certs),
    'local:',
    `  bench: { target: 127.0.0.1:${backendPort} }`,
    'services:',
    `  bench: { endpoints: [ { address: 127.0.0.1:${backendPort} } ] }`,
    `  plain: { endpoints: [ { address: 127.0.0.1:${backendPort} } ] }`,
    '',
  ].join('\n');
}

function meshdAConfig(adminPort: number, outboundPort: number, bInboundPort: number, bOutboundPort: number, certs: string): string {
  return [
    `admin: { listen: 127.0.0.1:${adminPort} }`,
    `outbound: { listen: 127.0.0.1:${outboundPort} }`,
    'log: { level: warn }',
    tlsLine(certs),
    'services:',
    `  bench: { endpoints: [ { address: 127.0.0.1:${bInboundPort}, identity: "spiffe://${TRUST_DOMAIN}/host/b" } ] }`,
    `  plain: { endpoints: [ { address: 127.0.0.1:${bOutboundPort} } ] }`,
    '',
  ].join('\n');
}

function startMeshdIn(tmp: string, name: string, port: number, yaml: string, cpu: number | undefined): Server {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  return { ...startMeshdWithConfig(dir, port, yaml, cpu), name };
}

const handshakeCounts = (m: MetricSamples | undefined): { full: number; resumed: number } | undefined =>
  m === undefined
    ? undefined
    : {
        full: metricSum(m, 'meshd_tls_handshakes_total', ['listener="inbound"', 'resumed="false"']),
        resumed: metricSum(m, 'meshd_tls_handshakes_total', ['listener="inbound"', 'resumed="true"']),
      };

export async function runMtls(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tools, pinning, proxyCpu, loadCpu, tmp, started, revision } = ctx;
  const pki = makePki(tmp);
  log(`mtls: certificates in ${pki.dir}`);

  // Host A (the caller's proxy) on the proxy CPU; host B's proxy shares the load CPU with the backend and wrk.
  const backendPort = await freePort();
  const backend = startBackend(tmp, backendPort, loadCpu);
  const [bAdmin, bOut, bIn, aAdmin, aOut] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const meshdB = startMeshdIn(tmp, 'meshd-b', bOut, meshdBConfig(bAdmin, bOut, bIn, backendPort, pki.b), loadCpu);
  const meshdA = startMeshdIn(tmp, 'meshd-a', aOut, meshdAConfig(aAdmin, aOut, bIn, bOut, pki.a), proxyCpu);
  let nginxA: Server | undefined;
  let nginxB: Server | undefined;
  const nginxTls = pki.nginx;
  if (tools.nginx !== undefined && nginxTls !== undefined) {
    const nbPort = await freePort();
    const naPort = await freePort();
    nginxB = startNginxWithConfig(tools.nginx, tmp, 'nginx-b', nbPort, (dir) => nginxTlsServerConfig(dir, nbPort, backendPort, nginxTls), loadCpu);
    nginxA = startNginxWithConfig(tools.nginx, tmp, 'nginx-a', naPort, (dir) => nginxTlsClientConfig(dir, naPort, nbPort, nginxTls), proxyCpu);
  }

  const rows: Row[] = [
    { name: 'direct', entry: backend, host: 'bench', hop1: 'backend', hop2: undefined, meshds: [] },
    { name: 'plain two-hop', entry: meshdA, host: 'plain', hop1: 'meshd-a', hop2: 'meshd-b', meshds: ['a', 'b'] },
    { name: 'mTLS hop', entry: meshdA, host: 'bench', hop1: 'meshd-a', hop2: 'meshd-b', meshds: ['a', 'b'] },
    ...(nginxA !== undefined ? [{ name: 'nginx TLS hop', entry: nginxA, host: 'bench', hop1: 'nginx-a', hop2: 'nginx-b', meshds: [] } as const] : []),
  ];
  for (const size of SIZES) {
    await waitReady(backend.proc, backendPort, size.path, size.bytes);
    await waitReady(meshdB.proc, bOut, size.path, size.bytes, 20_000, { host: 'plain' });
    for (const row of rows) await waitReady(row.entry.proc, row.entry.port, size.path, size.bytes, 20_000, { host: row.host });
  }
  for (const s of [meshdA, meshdB, nginxA, nginxB]) if (s !== undefined) log(`${s.name} ready (pid ${s.proc.pid})`);

  const groups = new Map<string, number[]>([
    ['backend', [backend.proc.pid]],
    ['meshd-a', [meshdA.proc.pid]],
    ['meshd-b', [meshdB.proc.pid]],
  ]);
  if (nginxA !== undefined) groups.set('nginx-a', [nginxA.proc.pid, ...childPids(nginxA.proc.pid)]);
  if (nginxB !== undefined) groups.set('nginx-b', [nginxB.proc.pid, ...childPids(nginxB.proc.pid)]);
  const meter = new CpuMeter(groups, loadCpu);
  const watches = [...groups.keys()].filter((g) => g !== 'backend').map((g) => new RssWatch(g, () => groups.get(g) ?? []));
  for (const w of watches) w.sample();
  const sampler = setInterval(() => {
    for (const w of watches) w.sample();
  }, 250);
  const aBefore = await scrapeMetrics(aAdmin);
  const bBefore = await scrapeMetrics(bAdmin);
  const handshakesAtStart = handshakeCounts(bBefore);

  try {
    let inFlightA = 0;
    let inFlightB = 0;
    const runOnce = async (row: Row, path: string, durationSec: number): Promise<HopRun> => {
      if (row.meshds.includes('a')) inFlightA += settings.connections;
      if (row.meshds.includes('b')) inFlightB += settings.connections;
      for (const s of [backend, meshdA, meshdB, nginxA, nginxB]) {
        if (s !== undefined && s.proc.exit !== undefined) {
          throw new Error(`${s.name} exited (code ${s.proc.exit.code}, signal ${s.proc.exit.signal}):\n${tailOf(s.proc)}`);
        }
      }
      const hs0 = row.name === 'mTLS hop' ? handshakeCounts(await scrapeMetrics(bAdmin)) : undefined;
      const t0 = performance.now();
      const h0 = row.hop2 === undefined ? undefined : meter.groupTicks(row.hop2);
      const { value: r, ...cpu } = await meter.measure(row.hop1, () =>
        runWrk({ wrk: tools.wrk, port: row.entry.port, path, threads: THREADS, connections: settings.connections, durationSec, cpu: loadCpu, host: row.host }),
      );
      const h1 = row.hop2 === undefined ? undefined : meter.groupTicks(row.hop2);
      const seconds = (performance.now() - t0) / 1_000;
      const hs1 = row.name === 'mTLS hop' ? handshakeCounts(await scrapeMetrics(bAdmin)) : undefined;
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
        hop2CpuPct: h0 === undefined || h1 === undefined ? undefined : ((h1 - h0) / 100 / seconds) * 100,
        handshakes: hs0 === undefined || hs1 === undefined ? undefined : { full: hs1.full - hs0.full, resumed: hs1.resumed - hs0.resumed },
      };
    };

    if (settings.warmupSec > 0) {
      log(`mtls warm-up: ${settings.warmupSec} s per row and size`);
      for (const size of SIZES) for (const row of rows) await runOnce(row, size.path, settings.warmupSec);
    }

    const { results, discarded } = await measureRounds(
      settings,
      SIZES,
      rows,
      (row, size) => `${row.name}/${size.name}`,
      (row, size) => runOnce(row, size.path, settings.durationSec),
      (row, size, x) =>
        `${row.name.padEnd(13)} ${size.name.padEnd(5)} ${Math.round(x.rps).toString().padStart(7)} req/s` +
        `  p50 ${x.p50Ms.toFixed(3)} ms  p99 ${x.p99Ms.toFixed(3)} ms  cpu ${x.serverCpuPct?.toFixed(0) ?? '?'}%` +
        `${x.hop2CpuPct !== undefined ? `+${x.hop2CpuPct.toFixed(0)}%` : ''}${x.loadCorePct !== undefined ? ` load-core ${x.loadCorePct.toFixed(0)}%` : ''}` +
        (x.handshakes !== undefined ? `  handshakes ${x.handshakes.full} full / ${x.handshakes.resumed} resumed` : '') +
        `${otherNote(x.otherCpuPct)}${x.non2xx > 0 ? `  non-2xx ${x.non2xx}` : ''}${x.errors > 0 ? `  errors ${x.errors}` : ''}`,
    );

    clearInterval(sampler);
    for (const w of watches) {
      w.sample();
      w.finish();
    }
    const aAfter = await scrapeMetrics(aAdmin);
    const bAfter = await scrapeMetrics(bAdmin);
    const handshakesAtEnd = handshakeCounts(bAfter);

    const summaries = new Map<string, LoadSummary & { hop2CpuPct: number }>();
    for (const [key, runs] of results) {
      const hop2 = runs.map((r) => r.hop2CpuPct).filter((v): v is number => v !== undefined);
      summaries.set(key, { ...summarizeLoad(runs), hop2CpuPct: median(hop2) });
    }
    const find = (row: RowName, size: string): (LoadSummary & { hop2CpuPct: number }) | undefined => summaries.get(`${row}/${size}`);

    const lines = [
      '| path | size | req/s (median) | p50 | p99 | vs direct | mTLS / plain | vs nginx TLS hop | hop 1 CPU (A) | hop 2 CPU (B) | req/s per proxy core (A+B) | load core busy | other CPU | non-2xx/3xx | socket errors | requests |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const size of SIZES) {
      for (const row of rows) {
        const s = find(row.name, size.name);
        if (s === undefined) continue;
        const proxyCpuPct = row.hop2 === undefined ? Number.NaN : s.serverCpuPct + s.hop2CpuPct;
        const mtlsRow = row.name === 'mTLS hop';
        lines.push(
          `| ${row.name} | ${size.name} | ${fmtRps(s.rps)} | ${fmtMs(s.p50Ms)} | ${fmtMs(s.p99Ms)} | ${fmtRatio(s.rps, find('direct', size.name)?.rps)} | ` +
            `${mtlsRow ? fmtRatio(s.rps, find('plain two-hop', size.name)?.rps) : ''} | ` +
            `${mtlsRow || row.name === 'plain two-hop' ? fmtRatio(s.rps, find('nginx TLS hop', size.name)?.rps) : ''} | ` +
            `${row.hop2 === undefined ? '' : fmtPct(s.serverCpuPct)} | ${row.hop2 === undefined ? '' : fmtPct(s.hop2CpuPct)} | ` +
            `${row.hop2 === undefined ? '' : fmtRps(proxyCpuPct > 0 ? s.rps / (proxyCpuPct / 100) : Number.NaN)} | ` +
            `${fmtPct(s.loadCorePct)} | ${fmtPct(s.otherCpuPct)} | ${s.non2xx} | ${s.errors} | ${s.requests.toLocaleString('en-US')} |`,
        );
      }
    }

    // meshd B's inbound handshakes: during the measured mTLS runs, and over the whole run (readiness probes and warm-up included).
    const measured = { full: 0, resumed: 0, requests: 0 };
    for (const size of SIZES) {
      for (const r of results.get(`mTLS hop/${size.name}`) ?? []) {
        measured.full += r.handshakes?.full ?? 0;
        measured.resumed += r.handshakes?.resumed ?? 0;
        measured.requests += r.requests;
      }
    }
    const pct = (part: number, whole: number): string => (whole > 0 ? `${((part / whole) * 100).toFixed(0)}%` : 'n/a');
    const hsLines = [
      '| window | full handshakes (resumed="false") | resumed (resumed="true") | resumed share | requests over the mTLS hop | handshakes per 1,000 requests |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
    ];
    const measuredHs = measured.full + measured.resumed;
    hsLines.push(
      `| measured mTLS runs (${settings.repeats} × ${SIZES.length}) | ${measured.full} | ${measured.resumed} | ${pct(measured.resumed, measuredHs)} | ${measured.requests.toLocaleString('en-US')} | ` +
        `${measured.requests > 0 ? ((measuredHs / measured.requests) * 1_000).toFixed(3) : 'n/a'} |`,
    );
    if (handshakesAtEnd !== undefined) {
      const total = handshakesAtEnd.full + handshakesAtEnd.resumed;
      hsLines.push(
        `| whole run, scraped at the end (readiness probes and warm-up included) | ${handshakesAtEnd.full} | ${handshakesAtEnd.resumed} | ${pct(handshakesAtEnd.resumed, total)} | | |`,
      );
    } else {
      hsLines.push('| whole run | n/a (meshd B /metrics did not answer) | | | | |');
    }

    const problems: string[] = [];
    for (const size of SIZES) {
      for (const row of rows) {
        const s = find(row.name, size.name);
        if (s === undefined) continue;
        if (s.non2xx > 0 || s.errors > 0)
          problems.push(`- ${row.name}/${size.name}: ${s.non2xx} non-2xx/3xx responses, ${s.errors} socket errors out of ${s.requests} requests`);
        if (s.otherCpuPct > DISTURBED_PCT)
          problems.push(
            `- ${row.name}/${size.name}: other processes used a median ${Math.round(s.otherCpuPct)}% of a core during its runs; its numbers are disturbed`,
          );
      }
    }
    for (const [name, proc] of [
      ['meshd A', meshdA.proc],
      ['meshd B', meshdB.proc],
    ] as const) {
      const w = meshdWarnings(proc);
      if (w.count > 0) problems.push(`- ${name} logged ${w.count} line(s) at warn or above: ${w.samples.join('; ')}`);
    }
    const loadFailures = [...summaries.values()].reduce((a, s) => a + s.errors + s.non2xx, 0);
    const notes: string[] = [];
    for (const [name, before, after, bound] of [
      ['meshd A', aBefore, aAfter, inFlightA],
      ['meshd B', bBefore, bAfter, inFlightB],
    ] as const) {
      const f = metricFindings(before, after, bound, loadFailures);
      problems.push(...f.problems.map((p) => p.replace(/^- /, `- ${name}: `)));
      notes.push(...f.notes.map((n) => n.replace(/^- /, `- ${name}: `)));
    }

    const wrkCmd = `wrk -t${THREADS} -c${settings.connections} -d${settings.durationSec}s --latency -H 'Host: SERVICE'`;
    const header = [
      `# meshd mTLS hop benchmark${settings.quick ? ' (quick mode)' : ''}`,
      '',
      `- date: ${started.toISOString()}`,
      `- meshd: ${revision}; two processes (host A, host B), log level warn; certificates from \`meshd ca init\` / \`meshd cert issue\` (trust domain ${TRUST_DOMAIN}, RSA 2048, 24 h; \`tls.expiryWarning: 1h\` so the fresh 24 h certificates do not trip the default 24 h warning)`,
      `- node: ${process.version} (harness, backend and both meshd)`,
      `- CPU: ${cpuModel()}, ${availableParallelism()} cores; kernel ${release()}`,
      `- load: \`${wrkCmd}\`, ${settings.repeats} repeat(s) per cell (medians shown), ${settings.warmupSec} s warm-up per cell, rows interleaved each round (order rotated)`,
      ...retryNote(settings, discarded),
      `- pinning: ${pinning.enabled ? `hop 1 (meshd A, nginx A) on CPU ${PROXY_CPU}; hop 2 (meshd B, nginx B) on CPU ${LOAD_CPU} together with the backend and wrk` : `off (${pinning.reason})`} ` +
        `— host B's proxy competes with the load side for its core, as it would share its host with the service it fronts; "load core busy" therefore includes hop 2`,
      `- paths: "direct" = wrk → backend; "plain two-hop" = wrk → meshd A outbound (Host plain) → plain HTTP → meshd B outbound → backend; ` +
        `"mTLS hop" = wrk → meshd A outbound (Host bench) → mTLS (SPIFFE identity spiffe://${TRUST_DOMAIN}/host/b checked) → meshd B inbound → local target → backend; ` +
        `"nginx TLS hop" = wrk → nginx A (http) → HTTPS with a client certificate (proxy_ssl_certificate, proxy_ssl_trusted_certificate, proxy_ssl_verify on, proxy_ssl_session_reuse on, upstream keepalive 64) → ` +
        `nginx B (listen ssl, ssl_verify_client on, ssl_session_cache shared 10m) → backend (upstream keepalive 64); nginx: 1 worker each, access_log off, TLSv1.2–1.3`,
      `- ${pki.note}`,
      `- backend: node:http keep-alive (bench/backend.ts), 5-byte body (small) or 16 KiB body (16k)`,
      `- references: ${[firstLine(tools.wrk, ['-v']), tools.nginx !== undefined ? firstLine(tools.nginx, ['-v']) : 'nginx: skipped (not installed)', findExecutable('openssl') !== undefined ? firstLine('openssl', ['version']) : 'openssl: not found'].join('; ')}`,
      `- peak RSS (max of sampled VmRSS and final VmHWM): ${watches.map((w) => `${w.name} ${fmtMiB(w.peakKb)}`).join(', ')}`,
      `- mTLS / plain: req/s of the mTLS hop over the plain two-hop (goal ≥ 0.5×); vs nginx TLS hop: req/s of the meshd rows over nginx's TLS hop; ` +
        `hop 1 / hop 2 CPU: CPU time of the first / second proxy, % of one core (direct: none); req/s per proxy core = req/s ÷ (hop 1 + hop 2 CPU)`,
      `- p50/p99 are wrk's (with its coordinated-omission correction); non-2xx/3xx, socket errors and requests are totals over all repeats`,
      OTHER_CPU_NOTE,
      ...tools.notes.filter((n) => !n.startsWith('haproxy') && !n.startsWith('h2load')).map((n) => `- note: ${n}`),
    ];
    const report = reportText(
      header,
      [
        ...lines,
        '',
        '## meshd B inbound TLS handshakes',
        '',
        `From meshd B's admin /metrics, \`meshd_tls_handshakes_total{listener="inbound",resumed="true|false"}\`: per measured mTLS run (scraped before and after each) and in total at the end. ` +
          `meshd A keeps its mTLS connections to B pooled, so handshakes happen only when it opens a connection; resumed ones skip the certificate exchange.` +
          (handshakesAtStart !== undefined
            ? ` (At the start of the run, after the readiness probes: ${handshakesAtStart.full} full, ${handshakesAtStart.resumed} resumed.)`
            : ''),
        '',
        ...hsLines,
      ],
      problems,
      notes,
    );
    return writeReport('mtls', started, settings.quick, report);
  } finally {
    clearInterval(sampler);
  }
}
