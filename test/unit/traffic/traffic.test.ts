import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Endpoint } from '../../../src/balancer/endpoint.ts';
import { seededRandom } from '../../../src/clock.ts';
import type { EndpointSpec, FaultSpec } from '../../../src/config/types.ts';
import type { AttemptLease } from '../../../src/stack/attempt.ts';
import type { RequestHead } from '../../../src/stack/exchange.ts';
import { WeightedSplit, type AttemptSource } from '../../../src/traffic/backends.ts';
import { FaultRegistry } from '../../../src/traffic/faults.ts';
import { RateLimiter, RateLimiters } from '../../../src/traffic/rate-limiter.ts';
import { TokenBucket } from '../../../src/traffic/token-bucket.ts';

describe('token bucket (fake clock)', () => {
  it('grants the burst, then one token per 1/rate, and says when the next comes', () => {
    const bucket = new TokenBucket(10, 3, 0);
    assert.deepEqual([bucket.take(0), bucket.take(0), bucket.take(0)], [0, 0, 0]);
    assert.equal(bucket.take(0), 100);
    assert.equal(bucket.take(50), 50);
    assert.equal(bucket.take(100), 0);
    assert.equal(bucket.take(100), 100);
    // Refills never exceed the burst.
    assert.equal(bucket.available(10_000), 3);
  });

  it('per caller: each identity has its own bucket; callers without one share one', () => {
    let now = 0;
    const limiter = new RateLimiter({ requestsPerSecond: 1, burst: 2, per: 'caller' }, () => now);
    assert.deepEqual([limiter.take('a'), limiter.take('a'), limiter.take('a') > 0], [0, 0, true]);
    assert.deepEqual([limiter.take('b'), limiter.take('b')], [0, 0]);
    assert.deepEqual([limiter.take(undefined), limiter.take(undefined), limiter.take(undefined) > 0], [0, 0, true]);
    now = 1_000;
    assert.equal(limiter.take('a'), 0);
  });

  it('over 60 s at 100 rps offered against 20 rps, lets through 20/s plus the burst', () => {
    let now = 0;
    const limiter = new RateLimiter({ requestsPerSecond: 20, burst: 5, per: 'service' }, () => now);
    let passed = 0;
    for (let i = 0; i < 6_000; i++) {
      now = i * 10;
      if (limiter.take(undefined) === 0) passed++;
    }
    assert.ok(passed >= 1_200 && passed <= 1_205, String(passed));
  });

  it('a policy rebuild keeps an unchanged limit’s buckets, starts a changed one full, and drops the unused', () => {
    const limiters = new RateLimiters(() => 0);
    const settings = { requestsPerSecond: 1, burst: 1, per: 'service' } as const;
    const service = limiters.get('', settings);
    const route = limiters.get('route:search', settings);
    assert.notEqual(service, route, 'each scope has its own bucket');
    limiters.settle();
    assert.equal(service.take(undefined), 0);
    // Rebuilt with the same settings: the same, spent bucket.
    assert.equal(limiters.get('', settings), service);
    assert.ok(limiters.get('', settings).take(undefined) > 0);
    limiters.settle();
    // Rebuilt with other settings: a new, full bucket; the route, not asked for, is gone.
    const changed = limiters.get('', { ...settings, burst: 2 });
    assert.notEqual(changed, service);
    assert.equal(changed.take(undefined), 0);
    limiters.settle();
    assert.notEqual(limiters.get('route:search', settings), route);
  });
});

function endpoint(address: string, labels: Record<string, string> = {}): Endpoint {
  const [host, port] = address.split(':');
  const spec: EndpointSpec = { address, host: host ?? '', port: Number(port), zone: undefined, weight: 1, labels, identity: undefined };
  return new Endpoint(spec, { close: async () => {} } as never, { finished: () => {} }, 0);
}

function fakeSource(name: string, size: number, available = size): AttemptSource & { name: string; size: number; available: number } {
  return { name, size, available, begin: () => ({ endpoint: endpoint(`${name}:1`) }) as unknown as AttemptLease };
}

describe('weighted split (seeded)', () => {
  it('shares follow the weights within 1.5 points over 20,000 picks', () => {
    const a = fakeSource('a', 2);
    const b = fakeSource('b', 1);
    const c = fakeSource('c', 3);
    const split = new WeightedSplit(
      'svc',
      [
        { source: a, weight: () => 70 },
        { source: b, weight: () => 20 },
        { source: c, weight: () => 10 },
      ],
      seededRandom(7),
    );
    const counts = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const s = split.pick() as unknown as { name: string };
      counts.set(s.name, (counts.get(s.name) ?? 0) + 1);
    }
    for (const [name, want] of [
      ['a', 0.7],
      ['b', 0.2],
      ['c', 0.1],
    ] as const) {
      const share = (counts.get(name) ?? 0) / 20_000;
      assert.ok(Math.abs(share - want) < 0.015, `${name}: ${share}`);
    }
  });

  it('passes over an empty backend, follows a moving weight, and fails with no_endpoints when nothing is left', () => {
    let canary = 0;
    const stable = fakeSource('stable', 1);
    const next = fakeSource('canary', 0);
    const split = new WeightedSplit(
      'svc',
      [
        { source: stable, weight: () => 100 - canary },
        { source: next, weight: () => canary },
      ],
      seededRandom(1),
    );
    canary = 50;
    for (let i = 0; i < 100; i++) assert.equal(split.pick(), stable);
    next.size = 1;
    next.available = 1;
    canary = 100;
    for (let i = 0; i < 100; i++) assert.equal(split.pick(), next);
    // The canary's only endpoint ejected: its share goes to the stable subset.
    next.available = 0;
    canary = 50;
    for (let i = 0; i < 100; i++) assert.equal(split.pick(), stable);
    // Everything ejected: balanced over what exists (panic) rather than failing.
    stable.available = 0;
    const picked = new Set(Array.from({ length: 100 }, () => split.pick()));
    assert.deepEqual(picked, new Set([stable, next]));
    stable.size = 0;
    next.size = 0;
    assert.throws(() => split.pick(), { code: 'no_endpoints' });
  });
});

function fault(over: Partial<FaultSpec> & { name: string }): FaultSpec {
  return {
    match: { subset: undefined, endpoint: undefined, route: undefined, headers: [], callers: [] },
    delay: undefined,
    abort: { status: 503, reset: false, percent: 100 },
    durationMs: 10_000,
    ...over,
  };
}

const head = (fields: Record<string, string> = {}): RequestHead => ({
  method: 'GET',
  path: '/',
  authority: undefined,
  hasBody: false,
  remoteAddress: undefined,
  fields: [],
  field: (n) => fields[n],
});

describe('fault registry', () => {
  const v1 = endpoint('10.0.0.1:80', { version: 'v1' });
  const v2 = endpoint('10.0.0.2:80', { version: 'v2' });

  it('selects by subset, endpoint, route, header and caller', () => {
    const reg = new FaultRegistry(() => 0, seededRandom(1));
    reg.setConfigFaults('svc', [
      fault({ name: 'sub', match: { subset: { version: 'v2' }, endpoint: undefined, route: undefined, headers: [], callers: [] } }),
      fault({
        name: 'hdr',
        match: {
          subset: undefined,
          endpoint: '10.0.0.1:80',
          route: 'r1',
          headers: [{ name: 'x-chaos', type: 'Exact', value: '1' }],
          callers: ['spiffe://p/ns/a/**'],
        },
      }),
    ]);
    assert.equal(reg.plan('svc', v2, undefined, head(), undefined)?.fault.spec.name, 'sub');
    assert.equal(reg.plan('svc', v1, undefined, head(), undefined), undefined);
    assert.equal(reg.plan('svc', v1, 'r1', head({ 'x-chaos': '1' }), 'spiffe://p/ns/b/sa/x'), undefined, 'wrong caller');
    assert.equal(reg.plan('svc', v1, 'r2', head({ 'x-chaos': '1' }), 'spiffe://p/ns/a/sa/x'), undefined, 'wrong route');
    assert.equal(reg.plan('svc', v1, 'r1', head({ 'x-chaos': '1' }), 'spiffe://p/ns/a/sa/x')?.fault.spec.name, 'hdr');
    assert.equal(reg.plan('other', v2, undefined, head(), undefined), undefined);
  });

  it('applies a percentage within tolerance (seeded)', () => {
    const reg = new FaultRegistry(() => 0, seededRandom(3));
    reg.setConfigFaults('svc', [fault({ name: 'some', abort: { status: 500, reset: false, percent: 5 } })]);
    let hits = 0;
    for (let i = 0; i < 20_000; i++) if (reg.plan('svc', v1, undefined, head(), undefined) !== undefined) hits++;
    assert.ok(Math.abs(hits / 20_000 - 0.05) < 0.006, String(hits));
  });

  it('expires by itself; a reload with the same definition keeps the expiry, a changed one starts anew', () => {
    let now = 0;
    const reg = new FaultRegistry(() => now, seededRandom(1));
    const spec = fault({ name: 'f', durationMs: 1_000 });
    reg.setConfigFaults('svc', [spec]);
    now = 600;
    reg.setConfigFaults('svc', [spec]);
    now = 1_001;
    assert.equal(reg.plan('svc', v1, undefined, head(), undefined), undefined);
    assert.deepEqual(reg.list(), []);
    assert.equal(reg.has('svc'), false);
    reg.setConfigFaults('svc', [{ ...spec, durationMs: 2_000 }]);
    assert.equal(reg.list()[0]?.expiresInSeconds, 2);
  });

  it('admin faults: replaced by name, removed by name, kept across config reloads', () => {
    let now = 0;
    const reg = new FaultRegistry(() => now, seededRandom(1));
    reg.add('svc', fault({ name: 'a', durationMs: 5_000 }));
    reg.add('svc', fault({ name: 'a', durationMs: 9_000 }));
    reg.setConfigFaults('svc', []);
    assert.deepEqual(
      reg.list().map((f) => [f.name, f.source, f.expiresInSeconds]),
      [['a', 'admin', 9]],
    );
    assert.equal(reg.remove('svc', 'a'), true);
    assert.equal(reg.remove('svc', 'a'), false);
    now = 1;
    assert.deepEqual(reg.list(), []);
  });
});
