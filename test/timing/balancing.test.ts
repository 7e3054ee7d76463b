/**
 * Latency- and failure-aware balancing against real backends: one of three
 * answers 10× slower; P2C + peak EWMA routes around it, round robin cannot.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { request } from '../helpers/http.ts';
import { openLoop } from '../helpers/load.ts';

function delayed(ms: number, failEvery = 0) {
  let n = 0;
  return (_req: unknown, res: import('node:http').ServerResponse, backend: Backend): void => {
    n++;
    const fail = failEvery > 0 && n % failEvery === 0;
    setTimeout(() => {
      res.writeHead(fail ? 500 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ port: backend.port }));
    }, ms);
  };
}

describe('latency-aware balancing', () => {
  it('P2C + peak EWMA sends a 10× slower endpoint < 10 % of traffic; round robin sends it a third', async (t) => {
    const fast1 = await startBackend(delayed(5));
    const fast2 = await startBackend(delayed(5));
    const slow = await startBackend(delayed(50));
    const endpoints = `[ { address: ${fast1.address} }, { address: ${fast2.address} }, { address: ${slow.address} } ]`;
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  ewma: { endpoints: ${endpoints}, balancer: { algorithm: p2c-ewma }, outlier: { enabled: false } }
  rr: { endpoints: ${endpoints}, balancer: { algorithm: round-robin }, outlier: { enabled: false } }
`);
    try {
      const [ewma, rr] = await Promise.all([openLoop(meshd.outbound, 'ewma', 200, 800), openLoop(meshd.outbound, 'rr', 200, 800)]);
      const share = (ports: number[]): number => ports.slice(200).filter((p) => p === slow.port).length / (ports.length - 200);
      assert.ok(ewma.statuses.every((s) => s === 200) && rr.statuses.every((s) => s === 200));
      const ewmaShare = share(ewma.ports);
      const rrShare = share(rr.ports);
      assert.ok(ewmaShare < 0.1, `p2c-ewma sent the slow endpoint ${(ewmaShare * 100).toFixed(1)} % after warm-up`);
      assert.ok(Math.abs(rrShare - 1 / 3) < 0.02, `round robin sent it ${(rrShare * 100).toFixed(1)} %`);
      t.diagnostic(`10x slow endpoint share: p2c-ewma ${(ewmaShare * 100).toFixed(1)} %, round-robin ${(rrShare * 100).toFixed(1)} %`);
      const state = (await request(meshd.admin, { path: '/debug/state' })).json() as { services: { name: string; balancer: string }[] };
      assert.equal(state.services.find((s) => s.name === 'ewma')?.balancer, 'p2c-ewma');
    } finally {
      await meshd.stop();
      await Promise.all([fast1.close(), fast2.close(), slow.close()]);
    }
  });

  it('does not send more traffic to an endpoint that fails fast', async () => {
    const ok1 = await startBackend(delayed(20));
    const ok2 = await startBackend(delayed(20));
    const fastFail = await startBackend(delayed(1, 3)); // every third answer is a 500, 20× faster
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api: { endpoints: [ { address: ${ok1.address} }, { address: ${ok2.address} }, { address: ${fastFail.address} } ] }
`);
    try {
      const { ports } = await openLoop(meshd.outbound, 'api', 200, 800);
      const share = ports.slice(200).filter((p) => p === fastFail.port).length / 600;
      assert.ok(share < 1 / 3, `the fast-failing endpoint got ${(share * 100).toFixed(1)} % (fair share 33 %)`);
    } finally {
      await meshd.stop();
      await Promise.all([ok1.close(), ok2.close(), fastFail.close()]);
    }
  });
});
