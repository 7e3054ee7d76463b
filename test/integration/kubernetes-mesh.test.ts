/**
 * Kubernetes mesh mode across three "nodes" and their "pods", each a network
 * namespace joined by veth pairs to one bridge (a flat pod network), with one
 * meshd per node and the stand-in API server serving Pods and EndpointSlices.
 * Callers are real clients inside the calling pod's namespace: curl, Node's
 * http (load), @grpc/grpc-js (unary and streaming), python websockets; the
 * pod-delivery refusals are checked with curl presenting certificates.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { MESHD_BIN, startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { startFakeKubeApi, type FakeKubeApi, type FakePod, type FakeSlice } from '../helpers/fake-kube-api.ts';
import { createLab, labSupported, type Lab } from '../helpers/netns-lab.ts';
import { sleep } from '../helpers/http.ts';
import { createRootCa, issueLeaf, type IssuedCertificate } from '../../src/tls/pki.ts';

const helper = (name: string): string => fileURLToPath(new URL(`../helpers/${name}`, import.meta.url));
const SUBNET = '10.251';
const TRUST = 'cluster.local';
const meshdIdentity = (node: string): string => `spiffe://${TRUST}/ns/meshd/pod/meshd-${node}`;
const nodeIp = (n: number): string => `${SUBNET}.0.${n}`;

interface PodSpec {
  name: string;
  node: string;
  ip: string;
  serviceAccount: string;
  app: boolean;
}

const PODS: PodSpec[] = [
  { name: 'c1', node: 'node1', ip: `${SUBNET}.1.1`, serviceAccount: 'frontend', app: false },
  { name: 'k1', node: 'node1', ip: `${SUBNET}.1.2`, serviceAccount: 'cache', app: true },
  { name: 'x1', node: 'node1', ip: `${SUBNET}.1.3`, serviceAccount: 'intruder', app: false },
  { name: 'u2a', node: 'node2', ip: `${SUBNET}.2.1`, serviceAccount: 'users', app: true },
  { name: 'u2b', node: 'node2', ip: `${SUBNET}.2.2`, serviceAccount: 'users', app: true },
  { name: 'u3a', node: 'node3', ip: `${SUBNET}.3.1`, serviceAccount: 'users', app: true },
];
const USERS = PODS.filter((p) => p.name.startsWith('u'));
const pod = (name: string): PodSpec => PODS.find((p) => p.name === name) as PodSpec;

function usersSlice(ready: (p: PodSpec) => boolean = () => true): FakeSlice {
  return {
    name: 'users-1',
    namespace: 'shop',
    service: 'users',
    ports: [{ name: 'http', port: 8080 }],
    endpoints: USERS.map((p) => ({ ip: p.ip, nodeName: p.node, pod: p.name, ready: ready(p) })),
  };
}

function meshdPod(n: number, ready = true): FakePod {
  return {
    name: `meshd-node${n}`,
    namespace: 'meshd',
    ip: nodeIp(n),
    hostIP: nodeIp(n),
    nodeName: `node${n}`,
    labels: { 'app.kubernetes.io/name': 'meshd' },
    ready,
  };
}

/** Status and port of an answer, for comparing. */
const pick = (a: { status: string; port: number }): [string, number] => [a.status, a.port];

function run(argv: string[], timeoutMs = 30_000): Promise<{ code: number; out: string; err: string }> {
  const [cmd, ...args] = argv;
  return new Promise((resolve) => {
    execFile(cmd as string, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: stdout, err: stderr });
    });
  });
}

interface EndpointView {
  address: string;
  state: string;
  health?: { lastReason?: string; lastDetail?: Record<string, number>; windowRequests?: number };
}

interface LoadReport {
  total: number;
  statuses: Record<string, number>;
  pods: Record<string, number>;
  errors: string[];
}

describe('Kubernetes mesh mode across nodes', { skip: labSupported() }, () => {
  let lab: Lab;
  let api: FakeKubeApi;
  let dir: string;
  let ca: IssuedCertificate;
  const meshds = new Map<number, RunningDaemon>();
  const cleanups: (() => unknown)[] = [];

  /** Writes cert.pem, key.pem and ca.pem for `identity` into dir/name. */
  const writeIdentity = async (name: string, identity: string): Promise<string> => {
    const leaf = await issueLeaf(ca, identity, 3_600_000);
    const out = join(dir, name);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'cert.pem'), leaf.certPem);
    writeFileSync(join(out, 'key.pem'), leaf.keyPem);
    writeFileSync(join(out, 'ca.pem'), ca.certPem);
    return out;
  };

  const startMeshd = async (n: number): Promise<RunningDaemon> => {
    const certs = join(dir, `node${n}`);
    const ip = nodeIp(n);
    const daemon = await startDaemon(
      `
admin: { listen: ${ip}:9901 }
outbound: { listen: ${ip}:4140, allowFrom: [ ${SUBNET}.0.0/16 ] }
inbound: { listen: ${ip}:4143 }
drainTimeout: 5s
# Unsampled traces still carry their ids from hop to hop (a TCP stream's in its preamble); access lines name them.
tracing: { enabled: true, sampleRatio: 0 }
log: { access: { enabled: true, sampleRatio: 1 } }
tls: { cert: ${certs}/cert.pem, key: ${certs}/key.pem, ca: ${certs}/ca.pem }
kubernetes:
  nodeName: node${n}
  kubeconfig: ${api.kubeconfig}
  mesh:
    inboundPort: 4143
    service:
      timeout: 5s
      retries: { attempts: 3 }
      outlier:
        enabled: true
        consecutiveGatewayFailures: 5
        # P2C + peak-EWMA sends a pod that turns slow about concurrency/endpoints requests before its
        # first slow answer, then (almost) nothing: judge it on those few; the floor keeps this
        # shared, noisy machine's jitter from counting as slowness.
        latency: { factor: 3, percentile: 0.9, floor: 150ms, minRequests: 3, minHosts: 2 }
        window: 5s
        baseEjection: 5s
        maxEjectionShare: 0.5
    authorization:
      users.shop: { allow: [ "spiffe://${TRUST}/ns/shop/sa/frontend" ] }
      db.shop: { allow: [ "spiffe://${TRUST}/ns/shop/sa/frontend" ] }
services:
  # A TCP Service: a port on every node's meshd, its pods from EndpointSlices, reached as HTTP is.
  db:
    tcp: { listen: ${ip}:15432, allowFrom: [ ${SUBNET}.0.0/16 ] }
    discovery: { kubernetes: { service: db, namespace: shop, port: 7000, kubeconfig: ${api.kubeconfig} } }
`,
      { command: [...lab.exec(`node${n}`), process.execPath, MESHD_BIN] },
    );
    meshds.set(n, daemon);
    return daemon;
  };

  const curlIn = (podName: string, host: string, path = '/', headers: string[] = []): Promise<{ code: number; out: string; err: string }> =>
    run([
      ...lab.exec(podName),
      'curl',
      '-sS',
      '-m',
      '10',
      ...headers.flatMap((h) => ['-H', h]),
      '-H',
      `Host: ${host}`,
      '-w',
      '\n%{http_code}',
      `http://${nodeIp(Number(pod(podName).node.slice(4)))}:4140${path}`,
    ]);

  /** Load from a pod for `durationMs`, or until stop() is called. */
  const startLoad = (
    podName: string,
    service: string,
    durationMs: number,
    concurrency: number,
    path = '/load',
  ): { started: Promise<void>; report: Promise<LoadReport>; stop(): void } => {
    const child = lab.spawn(podName, process.execPath, [
      helper('pod-load.ts'),
      `${nodeIp(Number(pod(podName).node.slice(4)))}:4140`,
      service,
      String(durationMs),
      String(concurrency),
      path,
    ]);
    let out = '';
    let markStarted = (): void => {};
    const started = new Promise<void>((resolve) => (markStarted = resolve));
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('started\n')) markStarted();
    });
    const report = new Promise<LoadReport>((resolve, reject) =>
      child.once('exit', () => {
        markStarted();
        try {
          resolve(JSON.parse(out.slice(out.indexOf('started\n') + 'started\n'.length)) as LoadReport);
        } catch {
          reject(new Error(`no load report: ${out}`));
        }
      }),
    );
    return { started, report, stop: () => child.kill('SIGTERM') };
  };
  const load = (podName: string, service: string, durationMs: number, concurrency: number, path?: string): Promise<LoadReport> =>
    startLoad(podName, service, durationMs, concurrency, path).report;

  const debugState = async (n: number): Promise<{ services: { name: string; endpoints: EndpointView[] }[] }> => {
    const res = await fetch(`http://${nodeIp(n)}:9901/debug/state`);
    return (await res.json()) as { services: { name: string; endpoints: EndpointView[] }[] };
  };

  /** Waits (bounded) until `check` holds for node `n`'s view of users.shop. */
  const waitForEndpoints = async (n: number, check: (endpoints: EndpointView[]) => boolean, withinMs = 10_000): Promise<void> => {
    const deadline = Date.now() + withinMs;
    for (;;) {
      const users = (await debugState(n)).services.find((s) => s.name === 'users.shop');
      if (users !== undefined && check(users.endpoints)) return;
      assert.ok(Date.now() < deadline, `users.shop on node${n}: ${JSON.stringify(users?.endpoints)}`);
      await sleep(100);
    }
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-k8s-mesh-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    lab = createLab(SUBNET);
    cleanups.push(() => lab.destroy());
    for (const n of [1, 2, 3]) lab.add(`node${n}`, nodeIp(n));
    for (const p of PODS) lab.add(p.name, p.ip);
    api = await startFakeKubeApi([], lab.gateway);
    cleanups.push(() => api.close());
    for (const n of [1, 2, 3]) api.applyPod(meshdPod(n));
    for (const p of PODS)
      api.applyPod({ name: p.name, namespace: 'shop', ip: p.ip, nodeName: p.node, serviceAccount: p.serviceAccount, hostIP: nodeIp(Number(p.node.slice(4))) });
    api.applySlice(usersSlice());
    api.applySlice({
      name: 'greeter-1',
      namespace: 'shop',
      service: 'greeter',
      ports: [{ name: 'grpc', port: 9090, appProtocol: 'kubernetes.io/h2c' }],
      endpoints: USERS.map((p) => ({ ip: p.ip, nodeName: p.node, pod: p.name })),
    });
    api.applySlice({
      name: 'db-1',
      namespace: 'shop',
      service: 'db',
      ports: [{ name: 'tcp', port: 7000 }],
      endpoints: USERS.map((p) => ({ ip: p.ip, nodeName: p.node, pod: p.name })),
    });
    // GAMMA: "catalog" selects every users pod; "catalog-v1" and "catalog-v2" one version each.
    for (const [service, pods] of [
      ['catalog', ['u2a', 'u2b', 'u3a']],
      ['catalog-v1', ['u2a', 'u2b']],
      ['catalog-v2', ['u3a']],
    ] as const) {
      api.applySlice({
        name: `${service}-1`,
        namespace: 'shop',
        service,
        ports: [{ name: 'http', port: 8080 }],
        endpoints: pods.map((name) => ({ ip: pod(name).ip, nodeName: pod(name).node, pod: name })),
      });
    }
    // A multi-port Service: HTTP on Service port 80 (pods' 8080), gRPC on 9090, HTTP admin on 9100 (pods' 8081).
    api.applyService({
      name: 'multi',
      namespace: 'shop',
      ports: [
        { name: 'grpc', port: 9090, targetPort: 9090 },
        { name: 'http', port: 80, targetPort: 8080 },
        { name: 'admin', port: 9100, targetPort: 8081 },
      ],
    });
    api.applyService({ name: 'lone', namespace: 'lab', ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
    api.applySlice({
      name: 'lone-1',
      namespace: 'lab',
      service: 'lone',
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ ip: pod('u2a').ip, nodeName: 'node2', pod: 'u2a' }],
    });
    api.applySlice({
      name: 'multi-1',
      namespace: 'shop',
      service: 'multi',
      ports: [
        { name: 'grpc', port: 9090, appProtocol: 'kubernetes.io/h2c' },
        { name: 'http', port: 8080 },
        { name: 'admin', port: 8081 },
      ],
      endpoints: USERS.map((p) => ({ ip: p.ip, nodeName: p.node, pod: p.name })),
    });
    api.applySlice({
      name: 'cache-1',
      namespace: 'shop',
      service: 'cache',
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ ip: pod('k1').ip, nodeName: 'node1', pod: 'k1' }],
    });
    ca = await createRootCa(TRUST, 86_400_000);
    for (const n of [1, 2, 3]) await writeIdentity(`node${n}`, meshdIdentity(`node${n}`));
    // The pods' apps, each in its own namespace.
    await Promise.all(
      PODS.filter((p) => p.app).map(
        (p) =>
          new Promise<void>((resolve, reject) => {
            const child = lab.spawn(p.name, process.execPath, [helper('pod-server.ts'), p.name, p.ip, '8080', '9090', '7000', '8081']);
            const timer = setTimeout(() => reject(new Error(`pod ${p.name} did not start`)), 15_000);
            child.stdout?.once('data', () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    for (const n of [1, 2, 3]) await startMeshd(n);
  });

  after(async () => {
    await Promise.all([...meshds.values()].map((d) => d.stop()));
    // In reverse order of making: whatever `before` made, even when it failed halfway.
    for (const undo of cleanups.reverse()) await undo();
  });

  it('carries a pod’s calls to pods on nodes 2 and 3 over mTLS, balanced, and tells the app who called', async () => {
    const report = await load('c1', 'users', 1_500, 4);
    assert.equal(report.statuses['200'], report.total, JSON.stringify(report));
    // Latency-aware: shares follow each pod's speed on this busy machine, but every pod and both nodes take part.
    for (const p of USERS) assert.ok((report.pods[p.name] ?? 0) >= 5, `${p.name} got too few: ${JSON.stringify(report.pods)}`);
    for (const node of ['node2', 'node3']) {
      const share = USERS.filter((p) => p.node === node).reduce((sum, p) => sum + (report.pods[p.name] ?? 0), 0) / report.total;
      assert.ok(share >= 0.2, `${node} took ${share} of the calls: ${JSON.stringify(report.pods)}`);
    }
    for (const host of ['users', 'users.shop', 'users.shop.svc', 'users.shop.svc.cluster.local']) {
      const { out } = await curlIn('c1', host);
      const [body = '', status] = out.split('\n');
      assert.equal(status, '200', `${host}: ${out}`);
      const { pod: answered, headers } = JSON.parse(body) as { pod: string; headers: Record<string, string> };
      assert.ok(USERS.some((p) => p.name === answered));
      // Delivered by the pod's node meshd, which verified node 1's meshd (mTLS) …
      assert.equal(headers['x-meshd-peer-identity'], meshdIdentity('node1'));
      // … and passed on the calling pod as node 1's meshd observed it.
      assert.equal(headers['x-meshd-caller-identity'], `spiffe://${TRUST}/ns/shop/sa/frontend`);
      assert.equal(headers['x-meshd-caller-namespace'], 'shop');
      assert.equal(headers['x-meshd-caller-service-account'], 'frontend');
      assert.equal(headers['x-meshd-caller-pod'], 'c1');
      assert.equal(headers['x-meshd-target'], undefined);
      assert.equal(headers['x-meshd-service'], undefined);
    }
  });

  it('calls a pod on its own node directly, still naming the caller', async () => {
    const { out } = await curlIn('c1', 'cache');
    const [body = '', status] = out.split('\n');
    assert.equal(status, '200', out);
    const { pod: answered, headers } = JSON.parse(body) as { pod: string; headers: Record<string, string> };
    assert.equal(answered, 'k1');
    assert.equal(headers['x-meshd-peer-identity'], undefined);
    assert.equal(headers['x-meshd-caller-identity'], `spiffe://${TRUST}/ns/shop/sa/frontend`);
  });

  it('carries gRPC (unary, client-streaming, bidirectional) and WebSocket across nodes', async () => {
    const grpc = await run([...lab.exec('c1'), process.execPath, helper('pod-grpc.ts'), `${nodeIp(1)}:4140`, 'greeter']);
    const answer = JSON.parse(grpc.out) as { unary?: string; collected?: string; echoes?: string[]; error?: string };
    assert.equal(answer.error, undefined, grpc.out + grpc.err);
    assert.match(answer.unary ?? '', new RegExp(`^u[23][ab]:hi:spiffe://${TRUST}/ns/shop/sa/frontend$`));
    assert.equal(answer.collected, 'a,b,c');
    assert.deepEqual(answer.echoes, ['echo:x', 'echo:y']);
    const ws = await run([...lab.exec('c1'), '/usr/bin/python3', helper('ws-client.py'), `${nodeIp(1)}:4140`, 'users.shop', 'hello', 'again']);
    assert.equal(ws.code, 0, ws.err);
    assert.deepEqual(ws.out.trim().split('\n'), ['echo:hello', 'echo:again']);
  });

  it('reaches each port of a multi-port Service by the Service port in Host, as through its cluster IP', async () => {
    const answer = async (host: string, headers: string[] = []): Promise<{ status: string; pod: string; port: number }> => {
      const { out } = await curlIn('c1', host, '/', headers);
      const [body = '', status = ''] = out.split('\n');
      const parsed = JSON.parse(body) as { pod: string; port: number };
      assert.ok(
        USERS.some((p) => p.name === parsed.pod),
        out,
      );
      return { status, pod: parsed.pod, port: parsed.port };
    };
    // HTTP, the default port: by name alone, by its Service port, and by meshd's own port (a caller
    // that reached meshd by the Service's name); the admin port by its Service port 9100.
    for (const host of ['multi.shop', 'multi.shop:80', 'multi.shop:4140']) assert.deepEqual(pick(await answer(host)), ['200', 8080], host);
    assert.deepEqual(pick(await answer('multi.shop:9100')), ['200', 8081]);
    // gRPC on Service port 9090, across nodes, with @grpc/grpc-js naming it in :authority.
    const grpc = await run([...lab.exec('c1'), process.execPath, helper('pod-grpc.ts'), `${nodeIp(1)}:4140`, 'multi.shop:9090']);
    const reply = JSON.parse(grpc.out) as { unary?: string; collected?: string; error?: string };
    assert.equal(reply.error, undefined, grpc.out + grpc.err);
    assert.match(reply.unary ?? '', /^u[23][ab]:hi:/);
    assert.equal(reply.collected, 'a,b,c');
    // A port the Service does not have: refused, naming the ports it has.
    const { out } = await curlIn('c1', 'multi.shop:8080');
    assert.match(out, /has no TCP port 8080; its ports: 9090 \(grpc\), 80 \(http\), 9100 \(admin\)"[\s\S]*\n404$/);
    // Repeated in a namespace nothing else holds: one list of its Services, not one per call.
    const listsOfLab = (): number => api.requests.filter((r) => r.startsWith('/api/v1/namespaces/lab/services') && !r.includes('watch=true')).length;
    for (let i = 0; i < 3; i++) assert.match((await curlIn('c1', 'lone.lab:1')).out, /has no TCP port 1; its ports: 80 \(http\)"[\s\S]*\n404$/);
    assert.equal(listsOfLab(), 1);
    // One runtime per Service port, whatever the caller called it.
    const names = (await debugState(1)).services.map((svc) => svc.name).filter((n) => n.startsWith('multi.'));
    assert.deepEqual(names.sort(), ['multi.shop', 'multi.shop:9090', 'multi.shop:9100']);

    // GAMMA on one port: an HTTPRoute for port 80 sends `x-admin: yes` to the Service's own port
    // 9100 and everything else to itself (a route that only sets a timeout, as is common); port 9100
    // is untouched by it.
    api.applyHttpRoute({
      name: 'multi-admin',
      namespace: 'shop',
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'multi', port: 80 }],
        rules: [
          { matches: [{ headers: [{ name: 'x-admin', value: 'yes' }] }], backendRefs: [{ name: 'multi', port: 9100 }] },
          { backendRefs: [{ name: 'multi', port: 80 }], timeouts: { request: '5s' } },
        ],
      },
    });
    try {
      const deadline = Date.now() + 10_000;
      while ((await answer('multi.shop', ['x-admin: yes'])).port !== 8081) {
        assert.ok(Date.now() < deadline, 'the HTTPRoute never applied');
        await sleep(100);
      }
      assert.deepEqual(pick(await answer('multi.shop')), ['200', 8080], 'the rule sending to the Service itself');
      assert.deepEqual(pick(await answer('multi.shop:9100', ['x-admin: yes'])), ['200', 8081]);
      const { out: unmatched } = await curlIn('c1', 'multi.shop:9100', '/', ['x-admin: no']);
      assert.match(unmatched, /\n200$/, 'port 9100 has no HTTPRoute: no 404 catch-all there');
    } finally {
      api.deleteHttpRoute('multi-admin', 'shop');
    }
    // An HTTPRoute whose only backend is the Service itself (to set headers, timeouts, retries).
    api.applyHttpRoute({
      name: 'cache-self',
      namespace: 'shop',
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'cache' }],
        rules: [
          {
            filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-route', value: 'cache-self' }] } }],
            backendRefs: [{ name: 'cache', port: 8080 }],
          },
        ],
      },
    });
    try {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const { out: routed } = await curlIn('c1', 'cache');
        if (routed.includes('"x-route":"cache-self"')) {
          assert.match(routed, /\n200$/);
          break;
        }
        assert.ok(Date.now() < deadline, `the HTTPRoute never applied: ${routed}`);
        await sleep(100);
      }
    } finally {
      api.deleteHttpRoute('cache-self', 'shop');
    }
  });

  it('carries raw TCP to pods on other nodes over mTLS, and holds it to the Service’s policy', async () => {
    // Python's socket module as the client: connect, send, half-close, read to the end.
    const tcp = (podName: string): Promise<{ code: number; out: string; err: string }> =>
      run([
        ...lab.exec(podName),
        '/usr/bin/python3',
        '-c',
        [
          'import socket,sys',
          `s=socket.create_connection(("${nodeIp(1)}",15432),timeout=10)`,
          's.sendall(b"ping")',
          // Half-close: the answer still comes back through both meshds.
          's.shutdown(socket.SHUT_WR)',
          'data=b""',
          'while True:',
          '  chunk=s.recv(4096)',
          '  if not chunk: break',
          '  data+=chunk',
          'print(data.decode())',
        ].join('\n'),
      ]);
    const answered = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const { out, err } = await tcp('c1');
      assert.match(
        out.trim(),
        /^u[23][ab]:ping$/,
        err +
          JSON.stringify(
            [1, 2, 3].map((n) =>
              meshds
                .get(n)!
                .logs.filter((l) => l.level >= 40)
                .slice(-3),
            ),
          ),
      );
      answered.add(out.trim().split(':')[0]!);
    }
    assert.ok(answered.size >= 2, `one pod answered everything: ${[...answered].join(',')}`);
    // Each stream is one trace over both nodes: the sender's trace context travelled in the preamble.
    // Access lines are written at each hop's close and reach us through each meshd's stdout: give them a moment.
    const accessLines = async (nodes: number[], enough: (lines: RunningDaemon['logs']) => boolean): Promise<RunningDaemon['logs']> => {
      const pick = (): RunningDaemon['logs'] => nodes.flatMap((n) => meshds.get(n)!.logs.filter((l) => l['access'] === true && l['protocol'] === 'tcp'));
      for (let waited = 0; !enough(pick()) && waited < 5_000; waited += 50) await sleep(50);
      return pick();
    };
    const sent = (await accessLines([1], (lines) => lines.filter((l) => l['service'] === 'db').length >= 12)).filter((l) => l['service'] === 'db');
    assert.ok(sent.length >= 12, `access lines on node 1: ${sent.length}`);
    const traceIds = sent.slice(-12).map((l) => l['traceId']);
    const received = await accessLines([2, 3], (lines) => traceIds.every((id) => lines.some((r) => r['traceId'] === id)));
    for (const line of sent.slice(-12)) {
      const other = received.find((r) => r['traceId'] === line['traceId']);
      assert.ok(other !== undefined, `no receiving line for trace ${String(line['traceId'])}`);
      // What the sending meshd wrote: its preamble line, then the caller's 4 bytes.
      assert.ok(Number(other['bytesReceived']) > 4, String(other['bytesReceived']));
    }
    // The intruder's streams reach node 2 or 3, whose meshd closes them unanswered.
    const refused = await tcp('x1');
    assert.equal(refused.out.trim(), '');
    const receivers = [meshds.get(2)!, meshds.get(3)!];
    assert.ok(receivers.some((d) => d.logs.some((l) => l['event'] === 'pod_tcp_refused' && l['code'] === 'forbidden')));
  });

  it('refuses a caller the Service’s policy does not allow, and names no Service that does not exist', async () => {
    const denied = await curlIn('x1', 'users');
    assert.match(denied.out, /"error":"forbidden"[\s\S]*\n403$/);
    const cache = await curlIn('x1', 'cache');
    assert.match(cache.out, /\n200$/);
    const missing = await curlIn('c1', 'nosuch');
    assert.match(missing.out, /"error":"unknown_service"[\s\S]*\n404$/);
    const foreign = await curlIn('c1', 'users.elsewhere');
    assert.match(foreign.out, /"error":"unknown_service"[\s\S]*\n404$/);
  });

  it('delivers only to a ready pod of the Service on its own node, and only for a node’s meshd', async () => {
    const asNode1 = join(dir, 'node1');
    const workload = await writeIdentity('workload', `spiffe://${TRUST}/ns/shop/sa/frontend`);
    /** Node's https client, verifying node 2's meshd by its SPIFFE ID (its certificate names no DNS name). */
    const deliver = (certs: string, target: string, caller = `spiffe://${TRUST}/ns/shop/sa/frontend`): Promise<{ out: string }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          {
            host: nodeIp(2),
            port: 4143,
            path: '/',
            cert: readFileSync(join(certs, 'cert.pem')),
            key: readFileSync(join(certs, 'key.pem')),
            ca: readFileSync(join(certs, 'ca.pem')),
            checkServerIdentity: (_host, cert) =>
              cert.subjectaltname?.split(', ').includes(`URI:${meshdIdentity('node2')}`) === true
                ? undefined
                : new Error(`unexpected server ${cert.subjectaltname}`),
            headers: { 'x-meshd-service': 'users.shop', 'x-meshd-target': target, 'x-meshd-caller-identity': caller },
            agent: false,
            timeout: 10_000,
          },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (body += d));
            res.on('end', () => resolve({ out: `${body}\n${res.statusCode}` }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    assert.match((await deliver(asNode1, `${pod('u2a').ip}:8080`)).out, /"pod":"u2a"[\s\S]*\n200$/);
    // A pod of the Service, but on node 3: node 2 is no relay.
    assert.match((await deliver(asNode1, `${pod('u3a').ip}:8080`)).out, /"error":"misdirected"[\s\S]*\n421$/);
    // No pod at all (the API server's address), and a pod's port the Service does not expose.
    assert.match((await deliver(asNode1, api.url.slice(8))).out, /"error":"misdirected"[\s\S]*\n421$/);
    assert.match((await deliver(asNode1, `${pod('u2a').ip}:9999`)).out, /"error":"misdirected"[\s\S]*\n421$/);
    // A workload's certificate may not ask for a pod.
    assert.match((await deliver(workload, `${pod('u2a').ip}:8080`)).out, /"error":"forbidden"[\s\S]*\n403$/);
    // The Service's policy judges the calling pod at the receiving node too.
    const intruder = await deliver(asNode1, `${pod('u2a').ip}:8080`, `spiffe://${TRUST}/ns/shop/sa/intruder`);
    assert.match(intruder.out, /"error":"forbidden"[\s\S]*\n403$/);
    // Still serving.
    assert.match((await curlIn('c1', 'users')).out, /\n200$/);
  });

  it('routes a Service by the HTTPRoutes attached to it (GAMMA): pinning, weighted Services, rewrites, redirects, 404 when no rule matches, live changes', async (t) => {
    const route = (v2Weight: number): { name: string; namespace: string; spec: Record<string, unknown> } => ({
      name: 'catalog-split',
      namespace: 'shop',
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'catalog', port: 8080 }],
        rules: [
          {
            name: 'pinned',
            matches: [{ headers: [{ name: 'x-version', value: 'v2' }] }],
            backendRefs: [{ name: 'catalog-v2', port: 8080 }],
          },
          {
            name: 'api',
            matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
            filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-route', value: 'api' }] } }],
            backendRefs: [
              { name: 'catalog-v1', port: 8080, weight: 100 - v2Weight },
              { name: 'catalog-v2', port: 8080, weight: v2Weight },
            ],
          },
          {
            name: 'rewrite',
            matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
            filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'catalog.internal', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } }],
            backendRefs: [{ name: 'catalog-v1', port: 8080 }],
          },
          {
            name: 'moved',
            matches: [{ path: { type: 'PathPrefix', value: '/moved' } }],
            filters: [
              {
                type: 'RequestRedirect',
                requestRedirect: { hostname: 'catalog.shop', path: { type: 'ReplaceFullPath', replaceFullPath: '/here' }, statusCode: 301 },
              },
            ],
          },
          // Not supported by meshd: left out whole, logged.
          {
            name: 'cors',
            matches: [{ path: { type: 'PathPrefix', value: '/cors' } }],
            filters: [{ type: 'CORS', cors: { allowOrigins: ['https://example.com'] } }],
            backendRefs: [{ name: 'catalog-v1', port: 8080 }],
          },
        ],
      },
    });
    api.applyHttpRoute(route(20));
    try {
      const pinned = await run([...lab.exec('c1'), 'curl', '-sS', '-m', '10', '-H', 'Host: catalog', '-H', 'x-version: v2', `http://${nodeIp(1)}:4140/x`]);
      assert.equal((JSON.parse(pinned.out) as { pod: string }).pod, 'u3a', pinned.out + pinned.err);
      const api80 = await load('c1', 'catalog', 2_000, 4, '/api/items');
      const share = (api80.pods['u3a'] ?? 0) / api80.total;
      t.diagnostic(`GAMMA split 80/20: ${JSON.stringify(api80.pods)} (${(share * 100).toFixed(1)} % to catalog-v2)`);
      assert.equal(api80.statuses['200'], api80.total, JSON.stringify(api80));
      assert.ok(share > 0.1 && share < 0.3, `share to catalog-v2: ${share}`);
      const header = await run([...lab.exec('c1'), 'curl', '-sS', '-m', '10', '-H', 'Host: catalog', `http://${nodeIp(1)}:4140/api/x`]);
      assert.equal((JSON.parse(header.out) as { headers: Record<string, string> }).headers['x-route'], 'api');
      // URLRewrite: the pod on the other node gets the rewritten path (query kept) and Host.
      const rewritten = await run([...lab.exec('c1'), 'curl', '-sS', '-m', '10', '-H', 'Host: catalog', `http://${nodeIp(1)}:4140/old/items?page=2`]);
      const seen = JSON.parse(rewritten.out) as { pod: string; path: string; headers: Record<string, string> };
      assert.ok(['u2a', 'u2b'].includes(seen.pod), rewritten.out);
      assert.deepEqual([seen.path, seen.headers['host']], ['/new/items?page=2', 'catalog.internal'], rewritten.out);
      // RequestRedirect: answered by the caller's meshd, nothing forwarded.
      const redirect = await run([
        ...lab.exec('c1'),
        'curl',
        '-sS',
        '-m',
        '10',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code} %{redirect_url}',
        '-H',
        'Host: catalog',
        `http://${nodeIp(1)}:4140/moved/x?a=1`,
      ]);
      assert.equal(redirect.out, '301 http://catalog.shop/here?a=1', redirect.out + redirect.err);
      // No rule matches: 404 (Gateway API), and the unsupported rule was left out rather than half-applied.
      for (const path of ['/other', '/cors/thing']) {
        const miss = await curlIn('c1', 'catalog', path);
        assert.match(miss.out, /"error":"no_route"[\s\S]*\n404$/, `${path}: ${miss.out}`);
      }
      await meshds.get(1)?.waitForLog((l) => l.msg.startsWith('HTTPRoute rules left out') && JSON.stringify(l['skipped']).includes('CORS'));
      // A change to the HTTPRoute applies at once, without a restart: all of /api to catalog-v2.
      api.applyHttpRoute(route(100));
      const deadline = Date.now() + 10_000;
      let moved: LoadReport | undefined;
      while (Date.now() < deadline) {
        moved = await load('c1', 'catalog', 500, 2, '/api/items');
        if (moved.pods['u3a'] === moved.total) break;
      }
      assert.equal(moved?.pods['u3a'], moved?.total, JSON.stringify(moved));
      // Deleted: the Service routes as without HTTPRoutes (all its pods, any path).
      api.deleteHttpRoute('catalog-split', 'shop');
      const after = Date.now() + 10_000;
      let plain = await curlIn('c1', 'catalog', '/other');
      while (!plain.out.endsWith('\n200') && Date.now() < after) {
        await sleep(200);
        plain = await curlIn('c1', 'catalog', '/other');
      }
      assert.match(plain.out, /\n200$/, plain.out);
    } finally {
      api.deleteHttpRoute('catalog-split', 'shop');
    }
  });

  it('stops calling a pod that stops being ready', async () => {
    api.applySlice(usersSlice((p) => p.name !== 'u3a'));
    await waitForEndpoints(1, (endpoints) => !endpoints.some((e) => e.address === `${pod('u3a').ip}:8080`));
    const report = await load('c1', 'users', 1_000, 4);
    assert.equal(report.statuses['200'], report.total, JSON.stringify(report));
    assert.equal(report.pods['u3a'], undefined, JSON.stringify(report.pods));
    api.applySlice(usersSlice());
    await waitForEndpoints(1, (endpoints) => endpoints.length === USERS.length);
  });

  it('ejects a slow pod from the caller’s node meshd', async (t) => {
    // From a clean state: noise on this shared machine may have ejected someone for a while, and the
    // earlier tests' fast samples, still in the outlier window, would outnumber the slow ones.
    await waitForEndpoints(
      1,
      (endpoints) => endpoints.length === USERS.length && endpoints.every((e) => e.state === 'active' && e.health?.windowRequests === 0),
    );
    const slow = await fetch(`http://${pod('u2b').ip}:8080/_control/delay?ms=400`, { method: 'POST' });
    assert.equal(slow.status, 200);
    try {
      // Load until the caller's meshd ejects it (bounded). P2C + peak-EWMA sends the pod about 16/3
      // requests before its first slow answer and then only a trickle: those are what is judged.
      const running = startLoad('c1', 'users', 15_000, 16);
      await running.started;
      await waitForEndpoints(
        1,
        (endpoints) => {
          const u2b = endpoints.find((e) => e.address === `${pod('u2b').ip}:8080`);
          return u2b?.state === 'ejected' && u2b.health?.lastReason === 'latency';
        },
        15_000,
      );
      running.stop();
      const report = await running.report;
      const u2b = (await debugState(1)).services.find((s) => s.name === 'users.shop')?.endpoints.find((e) => e.address === `${pod('u2b').ip}:8080`);
      t.diagnostic(`ejected for latency: ${JSON.stringify(u2b?.health?.lastDetail)}; load ${JSON.stringify(report.pods)}`);
      assert.equal(report.statuses['200'], report.total, JSON.stringify(report));
      const after = await load('c1', 'users', 1_000, 4);
      assert.equal(after.pods['u2b'], undefined, JSON.stringify(after.pods));
    } finally {
      await fetch(`http://${pod('u2b').ip}:8080/_control/delay?ms=0`, { method: 'POST' });
    }
  });

  it('loses nothing while node 2’s meshd restarts under load', async (t) => {
    const running = load('c1', 'users', 6_000, 4);
    await sleep(1_000);
    // As the kubelet does when a DaemonSet pod is replaced: not ready first, then SIGTERM.
    api.applyPod(meshdPod(2, false));
    await sleep(300);
    await meshds.get(2)?.stop();
    await startMeshd(2);
    api.applyPod(meshdPod(2, true));
    const report = await running;
    t.diagnostic(`restart under load: ${JSON.stringify(report)}`);
    assert.equal(report.statuses['200'], report.total, JSON.stringify(report));
    assert.ok(report.total > 100, JSON.stringify(report));
    assert.ok((report.pods['u3a'] ?? 0) > 0);
  });
});
