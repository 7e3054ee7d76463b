import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RetryBudget } from '../../../src/stack/retry-budget.ts';
import { callerTimeoutMs } from '../../../src/stack/deadline.ts';
import { parseGrpcTimeout } from '../../../src/protocol/grpc.ts';
import { fields } from '../../helpers/fake-exchange.ts';

describe('retry budget', () => {
  it('allows ratio × requests plus the per-second floor over the window', () => {
    const budget = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 10_000 });
    for (let i = 0; i < 100; i++) budget.recordRequest(i * 10);
    // 0.2 × 100 + 1/s × 10 s = 30 retries.
    assert.equal(budget.allowance(1_000), 30);
    let granted = 0;
    for (let i = 0; i < 50; i++) if (budget.tryWithdraw(1_000)) granted++;
    assert.equal(granted, 30);
    assert.equal(budget.tryWithdraw(1_000), false);
  });

  it('frees the budget as requests and retries leave the window', () => {
    const budget = new RetryBudget({ ratio: 0.5, minPerSecond: 0, windowMs: 10_000 });
    for (let i = 0; i < 10; i++) budget.recordRequest(0);
    for (let i = 0; i < 5; i++) assert.ok(budget.tryWithdraw(0));
    assert.equal(budget.tryWithdraw(0), false);
    // 11 s later the old requests and retries are gone; new traffic earns new retries.
    for (let i = 0; i < 4; i++) budget.recordRequest(11_000);
    assert.deepEqual(budget.snapshot(11_000), { requests: 4, retries: 0, allowance: 2 });
    assert.ok(budget.tryWithdraw(11_000));
    assert.ok(budget.tryWithdraw(11_000));
    assert.equal(budget.tryWithdraw(11_000), false);
  });

  it('bounds retries to ratio of traffic in a total outage', () => {
    const budget = new RetryBudget({ ratio: 0.2, minPerSecond: 10, windowMs: 10_000 });
    let sent = 0;
    // 1,000 req/s for 60 s, every request failing and wanting 2 retries.
    for (let ms = 0; ms < 60_000; ms++) {
      budget.recordRequest(ms);
      sent++;
      for (let r = 0; r < 2; r++) if (budget.tryWithdraw(ms)) sent++;
    }
    assert.ok(sent / 60_000 <= 1.21, `upstream load ${sent / 60_000}× the callers'`);
  });
});

describe('caller deadlines', () => {
  it('parses grpc-timeout units', () => {
    assert.equal(parseGrpcTimeout('100m'), 100);
    assert.equal(parseGrpcTimeout('5S'), 5_000);
    assert.equal(parseGrpcTimeout('2M'), 120_000);
    assert.equal(parseGrpcTimeout('1H'), 3_600_000);
    assert.equal(parseGrpcTimeout('1500u'), 1.5);
    assert.equal(parseGrpcTimeout('123456789m'), undefined);
    assert.equal(parseGrpcTimeout('5s'), undefined);
  });
  it('takes the tighter of x-meshd-timeout-ms and grpc-timeout, ignoring nonsense', () => {
    assert.equal(callerTimeoutMs(fields({ 'x-meshd-timeout-ms': '250' })), 250);
    assert.equal(callerTimeoutMs(fields({ 'x-meshd-timeout-ms': '250', 'grpc-timeout': '100m' })), 100);
    assert.equal(callerTimeoutMs(fields({ 'x-meshd-timeout-ms': '-5' })), undefined);
    assert.equal(callerTimeoutMs(fields({})), undefined);
  });
});
