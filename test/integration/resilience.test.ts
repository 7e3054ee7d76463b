/**
 * Retries, the retry budget, deadlines and their propagation, and
 * circuit-breaker limits, against real backends.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { describe, it } from 'node:test';
import { closedPort, startBackend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { metricValue, request } from '../helpers/http.ts';

describe('retries', () => {
  it('hides a backend failing 30 % with 503s, within a budget of ≤ 1.25× upstream load', async (t) => {
    let served = 0;
    const flaky = await startBackend((_req, res) => {
      served++;
      const fail = served % 10 < 3;
      res.writeHead(fail ? 503 : 200);
      res.end(fail ? 'unavailable' : 'ok');
    });
    const healthy1 = await startBackend((_req, res) => res.end('ok'));
    const healthy2 = await startBackend((_req, res) => res.end('ok'));
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api:
    endpoints: [ { address: ${flaky.address} }, { address: ${healthy1.address} }, { address: ${healthy2.address} } ]
    balancer: { algorithm: round-robin }
`);
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    try {
      const total = 600;
      const statuses: number[] = [];
      for (let batch = 0; batch < total / 20; batch++) {
        const replies = await Promise.all(Array.from({ length: 20 }, () => request(meshd.outbound, { headers: { host: 'api' }, agent })));
        statuses.push(...replies.map((r) => r.status));
      }
      const ok = statuses.filter((s) => s === 200).length;
      assert.equal(ok, total, `caller saw ${total - ok} failures`);
      const upstream = flaky.hits + healthy1.hits + healthy2.hits;
      assert.ok(upstream <= total * 1.25, `upstream requests ${upstream} for ${total} calls`);
      t.diagnostic(`caller success ${ok}/${total}; upstream requests ${upstream} (${(upstream / total).toFixed(3)}x)`);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_retries_total', { service: 'api', reason: '503' }) > 0);
    } finally {
      agent.destroy();
      await meshd.stop();
      await Promise.all([flaky.close(), healthy1.close(), healthy2.close()]);
    }
  });

  it('retries a connect failure for a POST with a body, on another endpoint', async () => {
    const live = await startBackend((req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`got ${n}`));
    });
    const dead = await closedPort();
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api:
    endpoints: [ { address: 127.0.0.1:${dead} }, { address: ${live.address} } ]
    balancer: { algorithm: round-robin }
`);
    try {
      for (let i = 0; i < 6; i++) {
        const reply = await request(meshd.outbound, { method: 'POST', headers: { host: 'api', 'content-type': 'text/plain' }, body: 'x'.repeat(1000) });
        assert.equal(reply.status, 200);
        assert.equal(reply.body, 'got 1000');
      }
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_retries_total', { service: 'api', reason: 'connect_failed' }) >= 3);
    } finally {
      await meshd.stop();
      await live.close();
    }
  });

  it('does not retry a non-idempotent request that may have been processed', async () => {
    const failing = await startBackend((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api: { endpoints: [ { address: ${failing.address} } ] }
`);
    try {
      const post = await request(meshd.outbound, { method: 'POST', headers: { host: 'api' }, body: 'x' });
      assert.equal(post.status, 503);
      assert.equal(failing.hits, 1, 'POST sent once');
      const marked = await request(meshd.outbound, { method: 'POST', headers: { host: 'api', 'x-meshd-retryable': 'true' }, body: 'x' });
      assert.equal(marked.status, 503);
      assert.equal(failing.hits, 4, 'a POST marked retryable gets 3 attempts');
    } finally {
      await meshd.stop();
      await failing.close();
    }
  });

  it('stops retrying when the budget is spent', async () => {
    const failing = await startBackend((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api:
    endpoints: [ { address: ${failing.address} } ]
    retries: { budget: { ratio: 0.1, minPerSecond: 0.5, window: 10s } }
`);
    try {
      for (let i = 0; i < 100; i++) assert.equal((await request(meshd.outbound, { headers: { host: 'api' } })).status, 503);
      // Allowance: 0.1 × 100 + 0.5/s × 10 s = 15 retries.
      assert.ok(failing.hits <= 115, `upstream saw ${failing.hits} requests for 100 calls`);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_retry_budget_exhausted_total', { service: 'api' }) > 0);
    } finally {
      await meshd.stop();
      await failing.close();
    }
  });
});

describe('deadlines', () => {
  it('propagates the remaining deadline downstream and honours the caller’s', async () => {
    let seen = '';
    const slow = await startBackend((req, res) => {
      seen = String(req.headers['x-meshd-timeout-ms']);
      setTimeout(() => res.end('late'), 400);
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api: { endpoints: [ { address: ${slow.address} } ], timeout: 2s, retries: { attempts: 1 } }
`);
    try {
      const full = await request(meshd.outbound, { headers: { host: 'api' } });
      assert.equal(full.status, 200);
      const budget = Number(seen);
      assert.ok(budget > 1_500 && budget <= 2_000, `next hop told ${seen} ms`);
      const started = Date.now();
      const short = await request(meshd.outbound, { headers: { host: 'api', 'x-meshd-timeout-ms': '150' } });
      assert.equal(short.status, 504);
      assert.equal(short.headers['x-meshd-error'], 'upstream_timeout');
      assert.ok(Date.now() - started < 380, 'the caller’s shorter deadline won');
      assert.ok(Number(seen) <= 150);
    } finally {
      await meshd.stop();
      await slow.close();
    }
  });

  it('retries after a per-try timeout on another endpoint', async () => {
    const hang = await startBackend(() => {});
    const fast = await startBackend((_req, res) => res.end('fast'));
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api:
    endpoints: [ { address: ${hang.address} }, { address: ${fast.address} } ]
    balancer: { algorithm: round-robin }
    timeout: 3s
    retries: { perTryTimeout: 200ms }
`);
    try {
      for (let i = 0; i < 4; i++) {
        const reply = await request(meshd.outbound, { headers: { host: 'api' } });
        assert.equal(reply.status, 200);
        assert.equal(reply.body, 'fast');
      }
    } finally {
      await meshd.stop();
      await Promise.all([hang.close(), fast.close()]);
    }
  });
});

describe('limits', () => {
  it('answers requests beyond maxInFlight with a fast 503 overloaded', async () => {
    const slow = await startBackend((_req, res) => setTimeout(() => res.end('ok'), 500));
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api: { endpoints: [ { address: ${slow.address} } ], limits: { maxInFlight: 3 } }
`);
    try {
      const started = Date.now();
      const timed = async (): Promise<{ status: number; ms: number; code: unknown; retryAfter: unknown }> => {
        const r = await request(meshd.outbound, { headers: { host: 'api' } });
        return { status: r.status, ms: Date.now() - started, code: r.headers['x-meshd-error'], retryAfter: r.headers['retry-after'] };
      };
      const results = await Promise.all(Array.from({ length: 8 }, timed));
      const ok = results.filter((r) => r.status === 200);
      const shed = results.filter((r) => r.status === 503);
      assert.equal(ok.length, 3);
      assert.equal(shed.length, 5);
      for (const r of shed) {
        assert.equal(r.code, 'overloaded');
        assert.equal(r.retryAfter, '1');
        assert.ok(r.ms < 300, `shed in ${r.ms} ms, not after waiting`);
      }
    } finally {
      await meshd.stop();
      await slow.close();
    }
  });
});
