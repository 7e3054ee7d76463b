import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seededRandom } from '../../../src/clock.ts';
import { StepObservations } from '../../../src/canary/step-observations.ts';

/** The sample at the percentile's rank, by the same rank rule as the histogram. */
function exactPercentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(1, Math.ceil(p * sorted.length - 1e-9)) - 1]!;
}

describe('step observations', () => {
  it('reports no traffic as a 100 % success rate with no latency', () => {
    const o = new StepObservations();
    assert.deepEqual(o.snapshot(0.9), {
      stable: { requests: 0, failures: 0, successRate: 1, latencyMs: undefined },
      canary: { requests: 0, failures: 0, successRate: 1, latencyMs: undefined },
    });
  });

  it('counts each side on its own', () => {
    const o = new StepObservations();
    for (let i = 0; i < 200; i++) o.record('stable', i % 100 !== 0, 10);
    for (let i = 0; i < 40; i++) o.record('canary', i % 4 !== 0, 20);
    const s = o.snapshot(0.5);
    assert.equal(s.stable.requests, 200);
    assert.equal(s.stable.failures, 2);
    assert.equal(s.stable.successRate, 0.99);
    assert.equal(s.canary.requests, 40);
    assert.equal(s.canary.failures, 10);
    assert.equal(s.canary.successRate, 0.75);
    assert.ok(s.stable.latencyMs !== undefined && s.stable.latencyMs >= 10 && s.stable.latencyMs < 11, `${s.stable.latencyMs}`);
    assert.ok(s.canary.latencyMs !== undefined && s.canary.latencyMs >= 20 && s.canary.latencyMs < 22, `${s.canary.latencyMs}`);
  });

  it('gives percentiles exact to within their bucket (10 %) over latencies from 0.1 ms to 10 s', () => {
    const random = seededRandom(7);
    const o = new StepObservations();
    const latencies: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      // Log-uniform: every decade is equally represented.
      const latency = 0.1 * 10 ** (5 * random());
      latencies.push(latency);
      o.record('canary', true, latency);
    }
    latencies.sort((a, b) => a - b);
    for (const p of [0.01, 0.5, 0.9, 0.99, 0.999]) {
      const exact = exactPercentile(latencies, p);
      const reported = o.snapshot(p).canary.latencyMs;
      assert.ok(reported !== undefined && reported >= exact && reported <= exact * 1.1 * (1 + 1e-12), `p${p}: ${reported} for ${exact}`);
    }
  });

  it('counts failed requests in the latency', () => {
    const o = new StepObservations();
    for (let i = 0; i < 9; i++) o.record('canary', true, 5);
    o.record('canary', false, 1000);
    const latency = o.snapshot(1).canary.latencyMs;
    assert.ok(latency !== undefined && latency >= 1000 && latency < 1100, `${latency}`);
  });

  it('clamps what is outside the range: below 0.1 ms, above two minutes, negative, NaN', () => {
    const o = new StepObservations();
    o.record('stable', true, 0);
    o.record('stable', true, -3);
    o.record('stable', true, Number.NaN);
    assert.equal(o.snapshot(1).stable.latencyMs, 0.1);
    o.record('canary', true, 10_000_000);
    const slowest = o.snapshot(1).canary.latencyMs;
    assert.ok(slowest !== undefined && slowest >= 120_000 && slowest < 140_000, `${slowest}`);
  });

  it('forgets everything on reset', () => {
    const o = new StepObservations();
    o.record('stable', false, 3);
    o.record('canary', false, 0.5);
    o.reset();
    const s = o.snapshot(0.9);
    assert.deepEqual(s.canary, { requests: 0, failures: 0, successRate: 1, latencyMs: undefined });
    assert.deepEqual(s.stable, { requests: 0, failures: 0, successRate: 1, latencyMs: undefined });
    o.record('canary', true, 300);
    const latency = o.snapshot(0.5).canary.latencyMs;
    assert.ok(latency !== undefined && latency >= 300 && latency < 330, `the old 0.5 ms is gone: ${latency}`);
  });
});
