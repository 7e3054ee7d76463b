/**
 * `allowFrom: [ node-pod-cidrs ]`: on a Kubernetes node the outbound
 * listener admits only this node's pods, whose ranges meshd reads from its
 * Node object at start. No API server runs here: a fake one that speaks the
 * API's wire format over HTTPS with a bearer token stands in, and the real
 * kubectl reads the same Node from it first to show that it is faithful.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startBackend, type Backend } from '../helpers/backend.ts';
import { runMeshd, startDaemon } from '../helpers/daemon.ts';
import { startFakeKubeApi, type FakeKubeApi } from '../helpers/fake-kube-api.ts';
import { metricValue, request } from '../helpers/http.ts';

describe('allowFrom: node-pod-cidrs', () => {
  let api: FakeKubeApi;
  let backend: Backend;
  const config = (node: string): string => `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0, allowFrom: [ node-pod-cidrs ] }
kubernetes: { apiServer: "${api.url}", tokenFile: ${api.tokenFile}, caFile: ${api.caFile}, nodeName: ${node} }
services:
  api: { endpoints: [ { address: ${backend.address} } ] }
`;

  before(async () => {
    api = await startFakeKubeApi([
      { name: 'node-1', podCIDRs: ['127.0.0.0/24', 'fd00:10:244:1::/64'] },
      { name: 'node-2', podCIDRs: ['10.99.0.0/24'] },
    ]);
    backend = await startBackend((_req, res) => res.end('ok'));
  });

  after(async () => {
    await backend.close();
    await api.close();
  });

  it('is a faithful API server for the real kubectl', async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        'kubectl',
        [
          '--kubeconfig=/dev/null',
          `--server=${api.url}`,
          `--certificate-authority=${api.caFile}`,
          `--token=${api.token}`,
          'get',
          'node',
          'node-1',
          '-o',
          'jsonpath={.spec.podCIDRs}',
        ],
        { timeout: 30_000 },
        (err, stdout, stderr) => (err === null ? resolve(stdout) : reject(new Error(`${err.message}\n${stderr}`))),
      ),
    );
    assert.deepEqual(JSON.parse(out), ['127.0.0.0/24', 'fd00:10:244:1::/64']);
  });

  it("admits this node's pods and refuses everyone else", async () => {
    const mark = api.requests.length;
    const one = await startDaemon(config('node-1'));
    try {
      const read = await one.waitForLog((l) => l.msg === 'node pod ranges read from the Kubernetes API');
      assert.deepEqual(read['podCidrs'], ['127.0.0.0/24', 'fd00:10:244:1::/64']);
      assert.ok(api.requests.slice(mark).includes('/api/v1/nodes/node-1'), 'meshd read its Node with the service account token');
      assert.equal((await request(one.outbound, { headers: { host: 'api' } })).status, 200, '127.0.0.1 is in node-1’s pod range');
    } finally {
      await one.stop();
    }
    const two = await startDaemon(config('node-2'));
    try {
      await two.waitForLog((l) => l.msg === 'node pod ranges read from the Kubernetes API');
      await assert.rejects(request(two.outbound, { headers: { host: 'api' } }), 'a caller outside node-2’s pod range is closed at accept');
      const metrics = (await request(two.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_connections_refused_total', { listener: 'outbound_source' }) >= 1);
    } finally {
      await two.stop();
    }
  });

  it('refuses to start, saying why, when the Node cannot be read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-kube-'));
    try {
      const file = join(dir, 'meshd.yaml');
      writeFileSync(file, config('node-9'));
      const missing = await runMeshd(['run', '--config', file]);
      assert.equal(missing.code, 1);
      assert.match(missing.stdout + missing.stderr, /nodes \\"?node-9\\"? not found/);
      writeFileSync(join(dir, 'bad-token'), 'wrong');
      writeFileSync(file, config('node-1').replace(api.tokenFile, join(dir, 'bad-token')));
      const refused = await runMeshd(['run', '--config', file]);
      assert.equal(refused.code, 1);
      assert.match(refused.stdout + refused.stderr, /401 Unauthorized/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
