/**
 * The `mesh` scenario: what Kubernetes mesh mode costs per request. Two
 * "nodes" and three "pods", each a network namespace on one bridge (the
 * harness of test/integration/kubernetes-mesh.test.ts), one meshd per node
 * and the stand-in API server. wrk runs inside the calling pod's namespace:
 *
 * - `direct`: to the far pod's own address, no meshd (the floor);
 * - `same node`: through its node's meshd to a pod on the same node (one proxy, plain);
 *   `(static)`: the same pod as a configured endpoint, without mesh mode;
 * - `cross node (mesh)`: node 1's meshd → mTLS → node 2's meshd → the pod, by Service name;
 * - `cross node (static)`: the same two meshds and hop, configured by hand
 *   (an endpoint with an identity, a local service), without mesh mode's
 *   routing, caller lookup and pod admission.
 *
 * Both meshds share the proxy CPU and wrk and the backends the load CPU (when
 * pinned). Rows alternate within each round; medians over BENCH_REPEATS rounds.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeKubeApi, type FakeKubeApi } from '../test/helpers/fake-kube-api.ts';
import { createLab, labSupported, type Lab } from '../test/helpers/netns-lab.ts';
import { createRootCa, issueLeaf } from '../src/tls/pki.ts';
import { cpuModel, log, reportText, writeReport, type ScenarioContext, type ScenarioOutcome } from './common.ts';
import { cpuTicks, sleep } from './procs.ts';
import { fmtMs, fmtRatio, fmtRps, median } from './report.ts';
import { parseWrk, type WrkResult } from './wrk.ts';

const SUBNET = '10.252';
const TRUST = 'cluster.local';
const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const MESHD_BIN = fileURLToPath(new URL('../bin/meshd.js', import.meta.url));
const CONNECTIONS = 32;
const TICKS_PER_SECOND = 100; // /proc clock ticks

const NODE = (n: number): string => `${SUBNET}.0.${n}`;
const PODS = { c1: `${SUBNET}.1.1`, near: `${SUBNET}.1.2`, far: `${SUBNET}.2.1` } as const;

type RowName = 'direct' | 'same node (mesh)' | 'same node (static)' | 'cross node (mesh)' | 'cross node (static)';
const ROWS: readonly { name: RowName; url: string; host: string }[] = [
  { name: 'direct', url: `http://${PODS.far}:8080/`, host: 'far' },
  { name: 'same node (mesh)', url: `http://${NODE(1)}:4140/`, host: 'near.bench' },
  { name: 'same node (static)', url: `http://${NODE(1)}:4140/`, host: 'static-near' },
  { name: 'cross node (mesh)', url: `http://${NODE(1)}:4140/`, host: 'far.bench' },
  { name: 'cross node (static)', url: `http://${NODE(1)}:4140/`, host: 'static-far' },
];

export function meshBudgetSec(ctx: Pick<ScenarioContext, 'settings'>): number {
  const { settings } = ctx;
  return settings.repeats * ROWS.length * (settings.durationSec + settings.warmupSec + 5) + 120;
}

function run(argv: readonly string[], timeoutMs: number): Promise<{ out: string; err: string; code: number }> {
  const [cmd, ...args] = argv;
  return new Promise((resolve) => {
    execFile(cmd as string, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ out: stdout, err: stderr, code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1 }),
    );
  });
}

export async function runMesh(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { settings, tmp, started, revision, proxyCpu, loadCpu } = ctx;
  const unsupported = labSupported();
  if (unsupported !== undefined) throw new Error(`the mesh scenario makes network namespaces: ${unsupported}`);
  const wrk = ctx.tools.wrk;
  const lab: Lab = createLab(SUBNET);
  let api: FakeKubeApi | undefined;
  const meshds: ChildProcess[] = [];
  try {
    for (const n of [1, 2]) lab.add(`node${n}`, NODE(n));
    for (const [name, ip] of Object.entries(PODS)) lab.add(name, ip);
    api = await startFakeKubeApi([], lab.gateway);
    for (const n of [1, 2]) {
      api.applyPod({
        name: `meshd-node${n}`,
        namespace: 'meshd',
        ip: NODE(n),
        hostIP: NODE(n),
        nodeName: `node${n}`,
        labels: { 'app.kubernetes.io/name': 'meshd' },
      });
    }
    api.applyPod({ name: 'c1', namespace: 'bench', ip: PODS.c1, nodeName: 'node1', serviceAccount: 'load' });
    api.applyPod({ name: 'near', namespace: 'bench', ip: PODS.near, nodeName: 'node1' });
    api.applyPod({ name: 'far', namespace: 'bench', ip: PODS.far, nodeName: 'node2' });
    for (const [service, pod, node] of [
      ['near', PODS.near, 'node1'],
      ['far', PODS.far, 'node2'],
    ] as const) {
      api.applySlice({
        name: `${service}-1`,
        namespace: 'bench',
        service,
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [{ ip: pod, nodeName: node, pod: service }],
      });
    }
    const ca = await createRootCa(TRUST, 86_400_000);
    const pin = (cpu: number | undefined): string[] => (cpu === undefined ? [] : ['taskset', '-c', String(cpu)]);
    const spawnIn = (ns: string, argv: readonly string[], env: NodeJS.ProcessEnv = {}): ChildProcess => {
      const [cmd = process.execPath, ...args] = argv;
      return lab.spawn(ns, cmd, args, env);
    };
    for (const pod of ['near', 'far'] as const) spawnIn(pod, [...pin(loadCpu), process.execPath, join(BENCH_DIR, 'backend.ts'), '8080', PODS[pod]]);
    for (const n of [1, 2]) {
      const dir = join(tmp, `node${n}`);
      mkdirSync(dir, { recursive: true });
      const leaf = await issueLeaf(ca, `spiffe://${TRUST}/ns/meshd/pod/meshd-node${n}`, 86_400_000);
      writeFileSync(join(dir, 'cert.pem'), leaf.certPem);
      writeFileSync(join(dir, 'key.pem'), leaf.keyPem);
      writeFileSync(join(dir, 'ca.pem'), ca.certPem);
      const lines = [
        `admin: { listen: ${NODE(n)}:9901 }`,
        `outbound: { listen: ${NODE(n)}:4140, allowFrom: [ ${SUBNET}.0.0/16 ] }`,
        `inbound: { listen: ${NODE(n)}:4143 }`,
        'log: { level: warn }',
        `tls: { cert: ${dir}/cert.pem, key: ${dir}/key.pem, ca: ${dir}/ca.pem }`,
        'kubernetes:',
        `  nodeName: node${n}`,
        `  kubeconfig: ${api.kubeconfig}`,
        '  mesh: { inboundPort: 4143 }',
        // The same hop configured by hand, for the static row.
        n === 1
          ? `services:\n  static-far: { endpoints: [ { address: "${NODE(2)}:4143", identity: "spiffe://${TRUST}/ns/meshd/pod/meshd-node2" } ] }\n  static-near: { endpoints: [ { address: "${PODS.near}:8080" } ] }`
          : `local:\n  static-far: { target: ${PODS.far}:8080 }`,
      ];
      writeFileSync(join(dir, 'meshd.yaml'), `${lines.join('\n')}\n`);
      // BENCH_MESH_PROFILE=DIR: node 1's meshd writes a CPU profile there when the run ends.
      const profile = process.env['BENCH_MESH_PROFILE'];
      const env = profile !== undefined && n === 1 ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profile}` } : {};
      meshds.push(spawnIn(`node${n}`, [...pin(proxyCpu), process.execPath, MESHD_BIN, 'run', '--config', join(dir, 'meshd.yaml')], env));
    }
    await waitUntilReady([NODE(1), NODE(2)]);
    const wrkIn = (row: (typeof ROWS)[number], seconds: number): Promise<{ out: string; err: string; code: number }> =>
      run(
        [...lab.exec('c1'), ...pin(loadCpu), wrk, '-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-H', `Host: ${row.host}`, row.url],
        (seconds + 30) * 1000,
      );
    // Warm every path (JIT, pools, TLS sessions) before measuring.
    for (const row of ROWS) {
      const warm = await wrkIn(row, Math.max(1, settings.warmupSec));
      if (warm.code !== 0) throw new Error(`wrk failed on ${row.name}: ${warm.err}`);
    }
    const results = new Map<RowName, WrkResult[]>(ROWS.map((r) => [r.name, []]));
    // meshd CPU per request (both meshds): what the path costs, whatever else bounds the rate here.
    const cpuPerRequest = new Map<RowName, number[]>(ROWS.map((r) => [r.name, []]));
    const meshdTicks = (): number => meshds.reduce((sum, m) => sum + (m.pid === undefined ? 0 : (cpuTicks(m.pid) ?? 0)), 0);
    for (let round = 1; round <= settings.repeats; round++) {
      for (const row of ROWS) {
        const before = meshdTicks();
        const { out, err, code } = await wrkIn(row, settings.durationSec);
        const ticks = meshdTicks() - before;
        if (code !== 0) throw new Error(`wrk failed on ${row.name}: ${err}`);
        const parsed = parseWrk(out);
        results.get(row.name)?.push(parsed);
        const usPerRequest = (ticks / TICKS_PER_SECOND / parsed.requests) * 1e6;
        cpuPerRequest.get(row.name)?.push(usPerRequest);
        log(
          `mesh round ${round} ${row.name}: ${fmtRps(parsed.requestsPerSec)} req/s, p50 ${fmtMs(parsed.p50Ms)}, p99 ${fmtMs(parsed.p99Ms)}, meshd CPU ${usPerRequest.toFixed(1)} µs/request`,
        );
      }
    }
    const cpu = (name: RowName): number => median(cpuPerRequest.get(name) ?? []);
    const med = (name: RowName, pick: (r: WrkResult) => number): number => median((results.get(name) ?? []).map(pick));
    const rps = (name: RowName): number => med(name, (r) => r.requestsPerSec);
    const body = [
      `| path | req/s | p50 | p99 | vs direct | vs static config | meshd CPU µs/request | vs static config | non-2xx / socket errors |`,
      `|---|---:|---:|---:|---:|---:|---:|---:|---:|`,
      ...ROWS.map((row) => {
        const all = results.get(row.name) ?? [];
        const errors = all.reduce((n, r) => n + r.non2xx3xx + r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout, 0);
        const staticRow: RowName | undefined = row.name.startsWith('cross')
          ? 'cross node (static)'
          : row.name.startsWith('same')
            ? 'same node (static)'
            : undefined;
        const vsStatic = staticRow === undefined ? '' : fmtRatio(rps(row.name), rps(staticRow));
        const cpuText = row.name === 'direct' ? '' : cpu(row.name).toFixed(1);
        const cpuVsStatic = staticRow === undefined ? '' : fmtRatio(cpu(row.name), cpu(staticRow));
        return `| ${row.name} | ${fmtRps(rps(row.name))} | ${fmtMs(med(row.name, (r) => r.p50Ms))} | ${fmtMs(med(row.name, (r) => r.p99Ms))} | ${fmtRatio(rps(row.name), rps('direct'))} | ${vsStatic} | ${cpuText} | ${cpuVsStatic} | ${errors} |`;
      }),
    ];
    const header = [
      `# meshd bench: Kubernetes mesh mode (${started.toISOString()})`,
      '',
      `- meshd ${revision}, Node ${process.version}, ${cpuModel()} × ${availableParallelism()}, Linux ${release()}`,
      `- wrk -t1 -c${CONNECTIONS}, ${settings.durationSec} s × ${settings.repeats} rounds (rows alternate), medians; 5-byte answers`,
      `- both meshds on CPU ${proxyCpu ?? 'any'}; wrk and the backends on CPU ${loadCpu ?? 'any'}`,
    ];
    const notes = [
      '- meshd CPU is both meshds’ user+system time over the run divided by its requests: the cost of a path, independent of what bounds the rate (wrk and the backends share one CPU; veth and bridge forwarding run in the kernel)',
      '- the static rows are the same paths configured by hand: the gap to them is what mesh mode adds (Service name and caller lookup, pod naming, the receiving node’s pod admission)',
      '- network namespaces and veth pairs stand for nodes and pods (no tc netem in this kernel: no added wire latency)',
    ];
    return writeReport('mesh', started, settings.quick, reportText(header, body, [], notes));
  } finally {
    // A graceful stop first (a CPU profile is written at exit), then the lab goes.
    const exits = meshds.map((m) =>
      m.exitCode !== null
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            m.once('exit', () => resolve());
            m.kill('SIGTERM');
          }),
    );
    await Promise.race([Promise.all(exits), sleep(15_000)]);
    await api?.close();
    lab.destroy();
  }
}

async function waitUntilReady(hosts: readonly string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (const host of hosts) {
    for (;;) {
      const ready = await fetch(`http://${host}:9901/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`meshd at ${host} did not become ready`);
      await sleep(200);
    }
  }
}
