/**
 * Backpressure: a backend with a fixed capacity, offered twice that. The
 * adaptive limit keeps admitted requests near their unloaded latency and the
 * excess gets fast 503s instead of a pile-up of timeouts. The global ceiling
 * protects the daemon itself.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startBackend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { metricValue, request } from '../helpers/http.ts';
import { openLoop } from '../helpers/load.ts';

function p99(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? Number.NaN;
}

describe('overload', () => {
  it('sheds the excess with fast 503s while admitted requests keep their latency', async (t) => {
    // 4 workers × 20 ms: 200 requests/s; beyond that requests queue inside the backend.
    const WORKERS = 4;
    let busy = 0;
    const waiting: (() => void)[] = [];
    const backend = await startBackend((_req, res, b) => {
      const serve = (): void => {
        busy++;
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ port: b.port }));
          busy--;
          waiting.shift()?.();
        }, 20);
      };
      if (busy < WORKERS) serve();
      else waiting.push(serve);
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api:
    endpoints: [ { address: ${backend.address} } ]
    timeout: 5s
    retries: { attempts: 1 }
    concurrency: { adaptive: true, initialLimit: 16, minLimit: 2 }
`);
    try {
      const unloaded = await openLoop(meshd.outbound, 'api', 100, 300);
      assert.ok(unloaded.statuses.every((s) => s === 200));
      const baseP99 = p99(unloaded.latencies.slice(100));
      const loaded = await openLoop(meshd.outbound, 'api', 400, 2_000);
      const settled = (i: number): boolean => loaded.sentAt[i]! >= 2_000; // after the limit has adapted
      const admitted = loaded.latencies.filter((_, i) => settled(i) && loaded.statuses[i] === 200);
      const shed = loaded.latencies.filter((_, i) => settled(i) && loaded.statuses[i] === 503);
      const other = loaded.statuses.filter((s) => s !== 200 && s !== 503);
      assert.deepEqual(other, [], 'every request was either served or shed');
      assert.ok(shed.length > 0, 'the excess was shed');
      const admittedP99 = p99(admitted);
      const shedP99 = p99(shed);
      t.diagnostic(
        `unloaded p99 ${baseP99.toFixed(1)} ms; at 2x capacity: admitted ${admitted.length} p99 ${admittedP99.toFixed(1)} ms, shed ${shed.length} p99 ${shedP99.toFixed(1)} ms`,
      );
      assert.ok(admittedP99 <= 2 * baseP99, `admitted p99 ${admittedP99.toFixed(1)} ms vs unloaded ${baseP99.toFixed(1)} ms`);
      assert.ok(shedP99 <= 2 * baseP99, `503s are fast: p99 ${shedP99.toFixed(1)} ms`);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_feedback_decisions_total', { service: 'api', decision: 'shed' }) > 0);
      assert.ok(metricValue(metrics, 'meshd_concurrency_limit', { service: 'api' }) < 16);
    } finally {
      await meshd.stop();
      await backend.close();
    }
  });
});

describe('global in-flight ceiling', () => {
  it('answers past the daemon-wide limit with fast 503s and keeps serving', async () => {
    const slow = await startBackend((_req, res) => setTimeout(() => res.end('ok'), 400));
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
limits: { maxInFlight: 4 }
services:
  a: { endpoints: [ { address: ${slow.address} } ] }
  b: { endpoints: [ { address: ${slow.address} } ] }
`);
    try {
      const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => request(meshd.outbound, { headers: { host: i % 2 === 0 ? 'a' : 'b' } })));
      assert.equal(replies.filter((r) => r.status === 200).length, 4);
      const shed = replies.filter((r) => r.status === 503);
      assert.equal(shed.length, 4);
      assert.ok(shed.every((r) => r.headers['x-meshd-error'] === 'overloaded'));
      assert.equal((await request(meshd.outbound, { headers: { host: 'a' } })).status, 200);
    } finally {
      await meshd.stop();
      await slow.close();
    }
  });
});

describe('active health checks', () => {
  it('hold out an endpoint whose health check fails and bring it back when it passes', async () => {
    let healthy = true;
    const flappy = await startBackend((req, res, b) => {
      if (req.url === '/healthz') {
        res.writeHead(healthy ? 200 : 503);
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ port: b.port }));
    });
    const steady = await startBackend((_req, res, b) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ port: b.port }));
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api:
    endpoints: [ { address: ${flappy.address} }, { address: ${steady.address} } ]
    balancer: { algorithm: round-robin }
    healthCheck: { http: { path: /healthz }, interval: 100ms, unhealthyThreshold: 2, healthyThreshold: 2 }
    outlier: { returnRamp: 0s }
`);
    try {
      healthy = false;
      await meshd.waitForLog((l) => l['event'] === 'eject' && l['reason'] === 'health_check');
      const out = await openLoop(meshd.outbound, 'api', 100, 50);
      assert.ok(
        out.ports.every((p) => p === steady.port),
        'no traffic to the failing endpoint',
      );
      healthy = true;
      await meshd.waitForLog((l) => l['event'] === 'return' && l['reason'] === 'health_check_passed');
      const back = await openLoop(meshd.outbound, 'api', 100, 50);
      assert.ok(
        back.ports.some((p) => p === flappy.port),
        'it is back',
      );
    } finally {
      await meshd.stop();
      await Promise.all([flappy.close(), steady.close()]);
    }
  });
});
