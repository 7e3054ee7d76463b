/**
 * Kubernetes EndpointSlice discovery with the official client. No API server
 * runs here: a stand-in speaks the API's list/watch protocol (JSON watch
 * events, bookmarks, 410 Gone, dropped connections), and the real kubectl
 * lists and watches through it first to show that it is faithful.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { startBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { startFakeKubeApi, type FakeKubeApi, type FakeSlice } from '../helpers/fake-kube-api.ts';
import { metricValue, request, sleep } from '../helpers/http.ts';

interface ServiceView {
  name: string;
  endpoints: { address: string; zone?: string; labels: Record<string, string>; stats: { total: Record<string, number> } }[];
  discovery: { sources: Record<string, { endpoints: number; lists: number; watches: number; gone: number; emptyHeldSince?: string; lastError?: string }> };
}

describe('Kubernetes EndpointSlice discovery', () => {
  let api: FakeKubeApi;
  let a: Backend;
  let b: Backend;
  let meshd: RunningDaemon;
  const slice = (name: string, port: number, endpoints: FakeSlice['endpoints']): FakeSlice => ({
    name,
    service: 'users',
    ports: [
      { name: 'http', port },
      { name: 'metrics', port: 9 },
    ],
    endpoints,
  });
  const view = async (): Promise<ServiceView> =>
    ((await request(meshd.admin, { path: '/debug/state' })).json() as { services: ServiceView[] }).services.find((s) => s.name === 'users')!;
  const source = async (): Promise<ServiceView['discovery']['sources'][string]> => (await view()).discovery.sources['kubernetes']!;
  const addresses = async (): Promise<string[]> => (await view()).endpoints.map((e) => e.address).sort();
  const waitFor = async (what: string, check: () => Promise<boolean>, ms = 8_000): Promise<void> => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (await check()) return;
      await sleep(50);
    }
    assert.fail(`not seen within ${ms} ms: ${what}`);
  };
  const kubectl = (args: string[]): Promise<string> =>
    new Promise((resolve, reject) =>
      execFile('kubectl', [`--kubeconfig=${api.kubeconfig}`, ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
        err === null ? resolve(stdout) : reject(new Error(`${err.message}\n${stderr}`)),
      ),
    );

  before(async () => {
    const named = (_req: unknown, res: import('node:http').ServerResponse, backend: Backend): void => void res.end(String(backend.port));
    [a, b] = await Promise.all([startBackend(named), startBackend(named)]);
    api = await startFakeKubeApi();
    api.applySlice(
      slice('users-a', a.port, [
        { ip: '127.0.0.1', zone: 'z1', nodeName: 'node-1', pod: 'users-a-1' },
        { ip: '127.0.0.9', ready: false, nodeName: 'node-1', pod: 'users-a-2' },
      ]),
    );
    api.applySlice(slice('users-b', b.port, [{ ip: '127.0.0.1', zone: 'z2', nodeName: 'node-2', pod: 'users-b-1' }]));
    api.applySlice({ name: 'other', service: 'other', ports: [{ name: 'http', port: 1 }], endpoints: [{ ip: '127.0.0.1' }] });
  });

  after(async () => {
    await meshd.stop();
    await api.close();
    await Promise.all([a.close(), b.close()]);
  });

  it('is a faithful API server for the real kubectl, list and watch', async () => {
    const listed = JSON.parse(await kubectl(['get', 'endpointslices', '-n', 'default', '-l', 'kubernetes.io/service-name=users', '-o', 'json'])) as {
      items: { metadata: { name: string } }[];
    };
    assert.deepEqual(listed.items.map((i) => i.metadata.name).sort(), ['users-a', 'users-b']);
    // Services (mesh mode reads their ports) as kubectl shows them.
    api.applyService({
      name: 'multi',
      namespace: 'default',
      ports: [
        { name: 'http', port: 80, targetPort: 8080 },
        { name: 'admin', port: 9090 },
      ],
    });
    const services = await kubectl([
      'get',
      'services',
      '-n',
      'default',
      '-o',
      'custom-columns=NAME:.metadata.name,PORTS:.spec.ports[*].port,TARGETS:.spec.ports[*].targetPort',
      '--no-headers',
    ]);
    assert.match(services, /^multi\s+80,9090\s+8080,9090\s*$/);
    api.deleteService('multi', 'default');
    // kubectl's watch: the events it prints are the ones the stand-in sends.
    const watch = spawn('kubectl', [
      `--kubeconfig=${api.kubeconfig}`,
      'get',
      'endpointslices',
      '-n',
      'default',
      '-l',
      'kubernetes.io/service-name=users',
      '--watch-only',
      '--output-watch-events',
      '-o',
      'json',
    ]);
    let out = '';
    watch.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('kubectl watching', () => Promise.resolve(api.openWatches > 0));
      api.applySlice(slice('users-b', b.port, [{ ip: '127.0.0.1', zone: 'z2', nodeName: 'node-2', pod: 'users-b-1' }]));
      await waitFor('kubectl printed the event', () => Promise.resolve(/"type":\s*"MODIFIED"/.test(out)));
      assert.match(out, /"name":\s*"users-b"/);
    } finally {
      watch.kill();
    }
  });

  it('balances over the ready endpoints at the named port, with zone, node and pod', async () => {
    meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    discovery:
      kubernetes: { service: users, namespace: default, port: http, kubeconfig: ${api.kubeconfig}, idleTimeout: 1s }
      acceptEmptyAfter: 30s
    balancer: { algorithm: round-robin }
`);
    assert.deepEqual(await addresses(), [a.address, b.address].sort(), 'the unready endpoint and the other service are left out');
    const ea = (await view()).endpoints.find((e) => e.address === a.address)!;
    assert.equal(ea.zone, 'z1');
    assert.deepEqual(ea.labels, { node: 'node-1', pod: 'users-a-1', namespace: 'default' });
    const answers = await Promise.all(Array.from({ length: 6 }, () => request(meshd.outbound, { headers: { host: 'users' } }).then((r) => r.body)));
    assert.deepEqual(new Set(answers), new Set([String(a.port), String(b.port)]));
    // One watch for the namespace, whatever the number of services: the slices that belong to a Service.
    const watches = api.requests.filter((r) => r.includes('watch=true') && r.includes('allowWatchBookmarks=true'));
    assert.ok(
      watches.some((r) => /labelSelector=kubernetes.io%2Fservice-name(&|$)/.test(r)),
      JSON.stringify(watches),
    );
  });

  it('follows the watch: an endpoint that stops being ready stops getting calls; the one that stays keeps its statistics', async () => {
    const before = (await view()).endpoints.find((e) => e.address === a.address)!.stats.total['success'] ?? 0;
    api.applySlice(slice('users-b', b.port, [{ ip: '127.0.0.1', ready: false, nodeName: 'node-2', pod: 'users-b-1' }]));
    await waitFor('b no longer ready', async () => JSON.stringify(await addresses()) === JSON.stringify([a.address]));
    const answers = await Promise.all(Array.from({ length: 4 }, () => request(meshd.outbound, { headers: { host: 'users' } }).then((r) => r.body)));
    assert.deepEqual(new Set(answers), new Set([String(a.port)]));
    assert.ok(((await view()).endpoints[0]!.stats.total['success'] ?? 0) > before && before > 0);
  });

  it('resumes a dropped watch from its version, relists on 410 Gone, and restarts a silent one', async () => {
    const mark = api.requests.length;
    api.bookmark();
    await sleep(100);
    api.dropWatches();
    await waitFor('resumed from a version', () =>
      Promise.resolve(api.requests.slice(mark).some((r) => r.includes('watch=true') && /resourceVersion=\d+/.test(r))),
    );
    api.compact();
    api.dropWatches();
    await waitFor('relisted after 410', async () => (await source()).gone >= 1);
    api.applySlice(slice('users-b', b.port, [{ ip: '127.0.0.1', nodeName: 'node-2', pod: 'users-b-1' }]));
    await waitFor('b back after the relist', async () => JSON.stringify(await addresses()) === JSON.stringify([a.address, b.address].sort()));
    const watches = (await source()).watches;
    api.silent = true;
    await sleep(2_500);
    api.silent = false;
    assert.ok((await source()).watches > watches, 'the watchdog restarted the silent watch');
    const lists = (await source()).lists;
    assert.ok(lists >= 2, `lists: ${lists}`);
  });

  it('holds back a Service that turns empty, and counts every answer', async () => {
    api.deleteSlice('users-a');
    api.deleteSlice('users-b');
    await waitFor('empty held', async () => (await source()).emptyHeldSince !== undefined);
    // The first deletion left b alone; the second would leave nothing, which looks like an outage.
    assert.deepEqual(await addresses(), [b.address]);
    assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200);
    const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_discovery_updates_total', { service: 'users', source: 'kubernetes', result: 'empty_held' }) >= 1);
    assert.ok(metricValue(metrics, 'meshd_discovery_updates_total', { service: 'users', source: 'kubernetes', result: 'changed' }) >= 2);
  });
});
