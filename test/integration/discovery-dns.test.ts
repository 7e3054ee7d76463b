/**
 * DNS discovery against a real DNS server (dnsmasq, started by the test):
 * SRV records give endpoints with their ports and weights, a change of the
 * records reaches the balancer without resetting the statistics of the
 * endpoints that stay, an empty answer is held back as a likely outage, a
 * dead server keeps the last good set, and A records take the port from the
 * config.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { startDnsmasq, type Dnsmasq } from '../helpers/dnsmasq.ts';
import { metricValue, request, sleep } from '../helpers/http.ts';

interface DiscoveredState {
  services: {
    name: string;
    endpoints: { address: string; weight: number; sources: string[]; stats: { total: Record<string, number> } }[];
    discovery: { sources: Record<string, { endpoints: number; lastError?: string; emptyHeldSince?: string; staleSeconds?: number }> };
  }[];
}

const SRV = '_http._tcp.users.test';

describe('DNS discovery (dnsmasq)', () => {
  let dns: Dnsmasq;
  let a: Backend;
  let b: Backend;
  let c: Backend;
  let meshd: RunningDaemon;
  const state = async (): Promise<DiscoveredState['services'][number]> =>
    ((await request(meshd.admin, { path: '/debug/state' })).json() as DiscoveredState).services.find((s) => s.name === 'users')!;
  const addresses = async (): Promise<string[]> => (await state()).endpoints.map((e) => e.address).sort();
  const waitFor = async (what: string, check: () => Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      if (await check()) return;
      await sleep(100);
    }
    assert.fail(`not seen within 10 s: ${what}`);
  };

  before(async () => {
    const named = (port: number) => (_req: unknown, res: import('node:http').ServerResponse) => res.end(String(port));
    a = await startBackend((req, res, backend) => named(backend.port)(req, res));
    b = await startBackend((req, res, backend) => named(backend.port)(req, res));
    c = await startBackend((req, res, backend) => named(backend.port)(req, res));
    dns = await startDnsmasq({
      srv: [
        { name: SRV, target: 'a.users.test', port: a.port, weight: 10 },
        { name: SRV, target: 'b.users.test', port: b.port, weight: 30 },
      ],
      hosts: { 'a.users.test': '127.0.0.1', 'b.users.test': '127.0.0.1', 'c.users.test': '127.0.0.1', 'web.test': '127.0.0.1' },
      ttl: 1,
    });
    meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    discovery:
      dns: { name: ${SRV}, servers: [ 127.0.0.1:${dns.port} ], minTtl: 200ms, maxTtl: 1s }
    balancer: { algorithm: round-robin }
  web:
    discovery:
      dns: { name: web.test, type: A, port: ${c.port}, servers: [ 127.0.0.1:${dns.port} ], minTtl: 200ms, maxTtl: 1s }
`);
  });

  after(async () => {
    await meshd.stop();
    await dns.close();
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  it('balances over the SRV targets, with their ports and weights', async () => {
    assert.deepEqual(await addresses(), [a.address, b.address].sort());
    const s = await state();
    assert.deepEqual(
      s.endpoints.map((e) => [e.address, e.weight, e.sources]).sort(),
      [
        [a.address, 10, ['dns']],
        [b.address, 30, ['dns']],
      ].sort(),
    );
    const answers = await Promise.all(Array.from({ length: 10 }, () => request(meshd.outbound, { headers: { host: 'users' } }).then((r) => r.body)));
    assert.deepEqual(new Set(answers), new Set([String(a.port), String(b.port)]));
    // A records, with the port from the config.
    assert.equal((await request(meshd.outbound, { headers: { host: 'web' } })).body, String(c.port));
  });

  it('follows a change of the records without resetting the statistics of the endpoint that stays', async () => {
    const before = (await state()).endpoints.find((e) => e.address === a.address)!.stats.total['success'] ?? 0;
    assert.ok(before > 0);
    await dns.set({
      srv: [
        { name: SRV, target: 'a.users.test', port: a.port, weight: 10 },
        { name: SRV, target: 'c.users.test', port: c.port, weight: 10 },
      ],
      hosts: { 'a.users.test': '127.0.0.1', 'c.users.test': '127.0.0.1', 'web.test': '127.0.0.1' },
      ttl: 1,
    });
    await waitFor('c replaces b', async () => JSON.stringify(await addresses()) === JSON.stringify([a.address, c.address].sort()));
    const kept = (await state()).endpoints.find((e) => e.address === a.address)!.stats.total['success'] ?? 0;
    assert.ok(kept >= before, `a's statistics kept: ${before} → ${kept}`);
    const answers = await Promise.all(Array.from({ length: 10 }, () => request(meshd.outbound, { headers: { host: 'users' } }).then((r) => r.body)));
    assert.ok(!answers.includes(String(b.port)), 'b is gone');
    assert.ok(answers.includes(String(c.port)));
  });

  it('holds back an empty answer that looks like an outage, and keeps the last good set while the server is down', async () => {
    await dns.set({ srv: [], hosts: { 'web.test': '127.0.0.1' }, ttl: 1 });
    await waitFor('empty answer held', async () => (await state()).discovery.sources['dns']?.emptyHeldSince !== undefined);
    assert.deepEqual(await addresses(), [a.address, c.address].sort(), 'the last good set stays');
    assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200);
    await dns.stop();
    await waitFor('failure recorded', async () => (await state()).discovery.sources['dns']?.lastError !== undefined);
    assert.deepEqual(await addresses(), [a.address, c.address].sort());
    assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200);
    const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_discovery_updates_total', { service: 'users', source: 'dns', result: 'empty_held' }) >= 1);
    assert.ok(metricValue(metrics, 'meshd_discovery_updates_total', { service: 'users', source: 'dns', result: 'error' }) >= 1);
    assert.ok(metricValue(metrics, 'meshd_discovery_updates_total', { service: 'users', source: 'dns', result: 'changed' }) >= 2);
    assert.ok(metricValue(metrics, 'meshd_discovery_staleness_seconds', { service: 'users' }) >= 0);
    // Back, with records again: the set follows.
    await dns.set({ srv: [{ name: SRV, target: 'b.users.test', port: b.port }], hosts: { 'b.users.test': '127.0.0.1', 'web.test': '127.0.0.1' }, ttl: 1 });
    await waitFor('b back alone', async () => JSON.stringify(await addresses()) === JSON.stringify([b.address]));
  });
});
