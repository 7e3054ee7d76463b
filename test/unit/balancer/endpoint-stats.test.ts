import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EndpointStats } from '../../../src/balancer/endpoint-stats.ts';

const options = { decayMs: 10_000, windowMs: 10_000, buckets: 10 };

describe('endpoint stats', () => {
  it('starts with the first sample, then decays towards new samples by elapsed time', () => {
    const stats = new EndpointStats(options);
    assert.equal(stats.snapshot(0).ewmaLatencyMs, undefined);
    stats.record('success', 100, 0);
    assert.equal(stats.snapshot(0).ewmaLatencyMs, 100);
    // After one decay time the old value weighs 1/e.
    stats.record('success', 0, 10_000);
    assert.ok(Math.abs(stats.snapshot(10_000).ewmaLatencyMs! - 100 / Math.E) < 1e-9);
    // A sample at the same instant carries no weight.
    stats.record('success', 1_000_000, 10_000);
    assert.ok(Math.abs(stats.snapshot(10_000).ewmaLatencyMs! - 100 / Math.E) < 1e-9);
  });

  it('computes the success rate over a sliding window', () => {
    const stats = new EndpointStats(options);
    for (let i = 0; i < 7; i++) stats.record('success', 1, i * 100);
    for (let i = 0; i < 3; i++) stats.record('http_5xx', 1, 800 + i * 10);
    let snap = stats.snapshot(1_000);
    assert.equal(snap.windowRequests, 10);
    assert.equal(snap.windowSuccessRate, 0.7);
    // 10.5 s later everything recorded before 1 s has left the window.
    stats.record('success', 1, 11_500);
    snap = stats.snapshot(11_500);
    assert.equal(snap.windowRequests, 1);
    assert.equal(snap.windowSuccessRate, 1);
    // A long silence empties it.
    assert.equal(stats.snapshot(60_000).windowRequests, 0);
    assert.equal(stats.snapshot(60_000).windowSuccessRate, undefined);
  });

  it('counts consecutive failures and resets them on success', () => {
    const stats = new EndpointStats(options);
    stats.record('connect_failed', 1, 0);
    stats.record('timeout', 1, 1);
    stats.record('reset', 1, 2);
    assert.equal(stats.snapshot(2).consecutiveFailures, 3);
    stats.record('success', 1, 3);
    assert.equal(stats.snapshot(3).consecutiveFailures, 0);
  });

  it('does not hold a client abort against the endpoint', () => {
    const stats = new EndpointStats(options);
    stats.record('connect_failed', 1, 0);
    stats.record('client_abort', 5_000, 1);
    const snap = stats.snapshot(1);
    assert.equal(snap.consecutiveFailures, 1);
    assert.equal(snap.windowRequests, 1);
    assert.equal(snap.ewmaLatencyMs, 1);
    assert.equal(snap.total.client_abort, 1);
    assert.equal(snap.lastOutcome, 'client_abort');
  });
});
