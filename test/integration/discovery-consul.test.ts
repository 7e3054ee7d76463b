/**
 * Consul discovery with blocking queries. No Consul server installs here:
 * the test runs a stand-in that speaks Consul's documented HTTP API for
 * /v1/health/service (blocking on index, X-Consul-Index, passing filter, ACL
 * token), with entries shaped like the documentation's sample answer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { startFakeConsul, type ConsulInstance, type FakeConsul } from '../helpers/fake-consul.ts';
import { metricValue, request, sleep } from '../helpers/http.ts';

interface ServiceView {
  name: string;
  endpoints: { address: string; zone?: string; weight: number; labels: Record<string, string>; stats: { total: Record<string, number> } }[];
  discovery: { sources: Record<string, { endpoints: number; lastError?: string; emptyHeldSince?: string; index: number }> };
}

describe('Consul discovery (blocking queries)', () => {
  let consul: FakeConsul;
  let a: Backend;
  let b: Backend;
  let c: Backend;
  let meshd: RunningDaemon;
  let dir: string;
  const instance = (backend: Backend, node: string, extra: Partial<ConsulInstance> = {}): ConsulInstance => ({
    node,
    nodeAddress: '127.0.0.1',
    port: backend.port,
    ...extra,
  });
  const view = async (): Promise<ServiceView> =>
    ((await request(meshd.admin, { path: '/debug/state' })).json() as { services: ServiceView[] }).services.find((s) => s.name === 'users')!;
  const addresses = async (): Promise<string[]> => (await view()).endpoints.map((e) => e.address).sort();
  const waitFor = async (what: string, check: () => Promise<boolean>, ms = 5_000): Promise<number> => {
    const started = Date.now();
    while (Date.now() - started < ms) {
      if (await check()) return Date.now() - started;
      await sleep(25);
    }
    return assert.fail(`not seen within ${ms} ms: ${what}`);
  };

  before(async () => {
    const named = (_req: unknown, res: import('node:http').ServerResponse, backend: Backend): void => void res.end(String(backend.port));
    [a, b, c] = await Promise.all([startBackend(named), startBackend(named), startBackend(named)]);
    consul = await startFakeConsul();
    consul.token = 'secret-acl-token';
    consul.set('users', [
      instance(a, 'node-a', { meta: { zone: 'z1', version: 'v1' }, weight: 5 }),
      instance(b, 'node-b', { address: '127.0.0.1', meta: { zone: 'z2' } }),
      instance(c, 'node-c', { status: 'critical' }),
    ]);
    dir = mkdtempSync(join(tmpdir(), 'meshd-consul-'));
    writeFileSync(join(dir, 'token'), 'secret-acl-token\n');
    meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    discovery:
      consul: { address: "${consul.address}", tokenFile: ${join(dir, 'token')}, wait: 2s }
    balancer: { algorithm: round-robin }
`);
  });

  after(async () => {
    await meshd.stop();
    await consul.close();
    await Promise.all([a.close(), b.close(), c.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the passing instances with their address, port, weight, zone and metadata, using the ACL token', async () => {
    assert.deepEqual(await addresses(), [a.address, b.address].sort(), 'the critical instance is left out');
    const s = await view();
    const ea = s.endpoints.find((e) => e.address === a.address)!;
    assert.equal(ea.weight, 5);
    assert.equal(ea.zone, 'z1');
    assert.equal(ea.labels['version'], 'v1');
    assert.equal(ea.labels['node'], 'node-a');
    assert.ok(consul.queries.some((q) => q.includes('passing=true') && q.includes('stale')));
    const answers = await Promise.all(Array.from({ length: 6 }, () => request(meshd.outbound, { headers: { host: 'users' } }).then((r) => r.body)));
    assert.deepEqual(new Set(answers), new Set([String(a.port), String(b.port)]));
  });

  it('follows a change at once through the blocking query, keeping the statistics of the instance that stays', async () => {
    const before = (await view()).endpoints.find((e) => e.address === a.address)!.stats.total['success'] ?? 0;
    await sleep(300); // a blocking query is now waiting at the agent
    consul.set('users', [instance(a, 'node-a', { meta: { zone: 'z1' } }), instance(c, 'node-c')]);
    const took = await waitFor('c replaces b', async () => JSON.stringify(await addresses()) === JSON.stringify([a.address, c.address].sort()));
    assert.ok(took < 1_500, `seen after ${took} ms, well before the 2 s wait ended`);
    const after = (await view()).endpoints.find((e) => e.address === a.address)!.stats.total['success'] ?? 0;
    assert.ok(after >= before && before > 0);
  });

  it('starts over when the index goes backwards, and counts an unchanged answer as no change', async () => {
    const mark = consul.queries.length;
    consul.setIndex(3);
    await waitFor('a query with index=0 after the reset', () => Promise.resolve(consul.queries.slice(mark).some((q) => /[?&]index=0(&|$)/.test(q))));
    assert.deepEqual(await addresses(), [a.address, c.address].sort());
    await sleep(2_500); // one wait runs out with nothing new
    const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_discovery_updates_total', { service: 'users', source: 'consul', result: 'unchanged' }) >= 1);
    assert.ok(metricValue(metrics, 'meshd_discovery_updates_total', { service: 'users', source: 'consul', result: 'changed' }) >= 2);
  });

  it('keeps the last good set when the agent fails, hangs, refuses the token or answers empty', async () => {
    consul.mode = 'fail';
    await waitFor('failure recorded', async () => ((await view()).discovery.sources['consul']?.lastError ?? '').includes('500'));
    assert.deepEqual(await addresses(), [a.address, c.address].sort());
    assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200);
    consul.mode = 'hang';
    await sleep(500);
    assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200, 'served while the agent hangs');
    consul.mode = 'ok';
    consul.token = 'rotated';
    await waitFor('token refused', async () => ((await view()).discovery.sources['consul']?.lastError ?? '').includes('403'), 12_000);
    writeFileSync(join(dir, 'token'), 'rotated');
    consul.set('users', [instance(c, 'node-c', { status: 'critical' })]);
    await waitFor('empty answer held', async () => (await view()).discovery.sources['consul']?.emptyHeldSince !== undefined, 12_000);
    assert.deepEqual(await addresses(), [a.address, c.address].sort(), 'an empty catalog looks like an outage: held');
    consul.set('users', [instance(b, 'node-b')]);
    await waitFor('b alone', async () => JSON.stringify(await addresses()) === JSON.stringify([b.address]), 12_000);
  });

  it('starts without waiting for an agent that hangs, and takes its answer when it comes', async () => {
    const slow = await startFakeConsul();
    slow.set('users', [instance(a, 'node-a')]);
    slow.mode = 'hang';
    const started = Date.now();
    const late = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users: { discovery: { consul: { address: "${slow.address}", wait: 1s } } }
`);
    try {
      await late.waitForLog((l) => l.msg === 'meshd ready', 15_000);
      const readyAfter = Date.now() - started;
      assert.ok(readyAfter < 10_000, `ready after ${readyAfter} ms, not after the agent's timeout`);
      assert.ok(late.logs.some((l) => l.msg.startsWith('a discovery source has not answered yet')));
      assert.equal((await request(late.outbound, { headers: { host: 'users' } })).status, 503, 'no endpoints yet: a fast 503');
      slow.mode = 'ok';
      const until = Date.now() + 15_000;
      let status = 0;
      while (Date.now() < until && status !== 200) {
        status = (await request(late.outbound, { headers: { host: 'users' } })).status;
        if (status !== 200) await sleep(100);
      }
      assert.equal(status, 200, 'the answer arrived and was used');
    } finally {
      await late.stop();
      await slow.close();
    }
  });
});
