import assert from 'node:assert/strict';
import { fields } from '../../helpers/fake-exchange.ts';
import { describe, it } from 'node:test';
import { hashKeyReader } from '../../../src/balancer/create.ts';
import { ewmaCost, P2CBalancer } from '../../../src/balancer/p2c.ts';
import { RingHashBalancer } from '../../../src/balancer/ring-hash.ts';
import { RoundRobinBalancer } from '../../../src/balancer/round-robin.ts';
import { NO_SLOW_START, slowStartFactor } from '../../../src/balancer/slow-start.ts';
import { WeightedRoundRobinBalancer } from '../../../src/balancer/weighted-round-robin.ts';
import { ZoneAwareBalancer } from '../../../src/balancer/zone-aware.ts';
import { seededRandom } from '../../../src/clock.ts';
import type { BalancerConfig } from '../../../src/config/types.ts';
import { endpoint, tally } from './fixtures.ts';

describe('weighted round robin', () => {
  it('gives each endpoint exactly its weight per cycle, interleaved', () => {
    const wrr = new WeightedRoundRobinBalancer(NO_SLOW_START);
    wrr.setEndpoints([endpoint('a', { weight: 5 }), endpoint('b', { weight: 1 }), endpoint('c', { weight: 1 })]);
    const seq = Array.from({ length: 7 }, () => wrr.pick(0)!.address);
    assert.deepEqual(seq, ['a', 'a', 'b', 'a', 'c', 'a', 'a']);
    const counts = tally(() => wrr.pick(0), 700);
    assert.deepEqual([counts.get('a'), counts.get('b'), counts.get('c')], [500, 100, 100]);
  });

  it('skips ineligible endpoints and scales warming ones by slow start', () => {
    const a = endpoint('a', { weight: 1, now: 0 });
    const b = endpoint('b', { weight: 1, now: 10_000 });
    const down = endpoint('down');
    down.up = false;
    const wrr = new WeightedRoundRobinBalancer({ windowMs: 10_000, aggression: 1, minWeight: 0.1 });
    wrr.setEndpoints([a, b, down]);
    // At t = 11 s, b joined 1 s ago: 10 % of its weight.
    const counts = tally(() => wrr.pick(11_000), 1_100);
    assert.equal(counts.get('down'), undefined);
    assert.equal(counts.get('b'), 100);
    assert.equal(counts.get('a'), 1_000);
  });
});

describe('slow start', () => {
  it('ramps from minWeight to full over the window, faster with more aggression', () => {
    const e = endpoint('a', { now: 1_000 });
    const linear = { windowMs: 10_000, aggression: 1, minWeight: 0.1 };
    assert.equal(slowStartFactor(e, 1_000, linear), 0.1);
    assert.equal(slowStartFactor(e, 6_000, linear), 0.5);
    assert.equal(slowStartFactor(e, 11_000, linear), 1);
    assert.ok(Math.abs(slowStartFactor(e, 3_500, { ...linear, aggression: 2 }) - 0.5) < 1e-12);
    assert.equal(slowStartFactor(e, 1_000, NO_SLOW_START), 1);
  });
});

describe('ring hash', () => {
  const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

  it('maps a key to the same endpoint every time, whatever the discovery order', () => {
    const eps = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80'].map((a) => endpoint(a));
    const r1 = new RingHashBalancer(new RoundRobinBalancer());
    const r2 = new RingHashBalancer(new RoundRobinBalancer());
    r1.setEndpoints(eps);
    r2.setEndpoints([...eps].reverse());
    for (const k of keys.slice(0, 500)) assert.equal(r1.pick(0, k), r2.pick(0, k));
  });

  it('spreads keys evenly and moves ≈ 1/N of them when one endpoint joins N', () => {
    const eps = Array.from({ length: 10 }, (_, i) => endpoint(`10.0.0.${i + 1}:8080`));
    const ring = new RingHashBalancer(new RoundRobinBalancer());
    ring.setEndpoints(eps);
    const before = keys.map((k) => ring.pick(0, k)!.address);
    const counts = new Map<string, number>();
    for (const a of before) counts.set(a, (counts.get(a) ?? 0) + 1);
    for (const c of counts.values()) assert.ok(c > 700 && c < 1_300, `share ${c} of 10000 for 10 endpoints`);
    ring.setEndpoints([...eps, endpoint('10.0.0.11:8080')]);
    const after = keys.map((k) => ring.pick(0, k)!.address);
    const moved = before.filter((a, i) => a !== after[i]).length / keys.length;
    assert.ok(moved > 0.05 && moved < 0.13, `moved ${moved}, expected ≈ 1/11 = 0.091`);
    assert.ok(
      before.every((a, i) => a === after[i] || after[i] === '10.0.0.11:8080'),
      'keys move only to the new endpoint',
    );
  });

  it('moves only the keys of an ineligible endpoint, and uses the fallback without a key', () => {
    const eps = Array.from({ length: 5 }, (_, i) => endpoint(`10.0.1.${i}:80`));
    const ring = new RingHashBalancer(new RoundRobinBalancer());
    ring.setEndpoints(eps);
    const before = keys.map((k) => ring.pick(0, k)!.address);
    eps[2]!.up = false;
    const after = keys.map((k) => ring.pick(0, k)!.address);
    assert.ok(before.every((a, i) => a === eps[2]!.address || a === after[i]));
    assert.ok(!after.includes(eps[2]!.address));
    assert.ok(ring.pick(0, undefined));
  });

  it('reads the key from a header or a cookie', () => {
    const base: BalancerConfig = {
      algorithm: 'ring-hash',
      decayMs: 1,
      defaultRttMs: 1,
      failurePenalty: 0,
      hashOn: { header: 'x-user' },
      zoneAware: false,
      slowStart: NO_SLOW_START,
    };
    assert.equal(hashKeyReader(base)?.(fields({ 'x-user': 'u1' })), 'u1');
    const byCookie = hashKeyReader({ ...base, hashOn: { cookie: 'session' } });
    assert.equal(byCookie?.(fields({ cookie: 'a=1; session=abc; b=2' })), 'abc');
    assert.equal(byCookie(fields({ cookie: 'a=1' })), undefined);
    assert.equal(hashKeyReader({ ...base, algorithm: 'p2c-ewma', hashOn: undefined }), undefined);
  });
});

describe('zone awareness', () => {
  const make = () => new P2CBalancer('p2c-ewma', ewmaCost, seededRandom(9), NO_SLOW_START);

  it('keeps traffic in the local zone while it has healthy capacity', () => {
    const local = [endpoint('a1', { zone: 'a' }), endpoint('a2', { zone: 'a' }), endpoint('a3', { zone: 'a' }), endpoint('a4', { zone: 'a' })];
    const remote = [endpoint('b1', { zone: 'b' }), endpoint('b2', { zone: 'b' })];
    const zb = new ZoneAwareBalancer('a', make(), make(), seededRandom(10));
    zb.setEndpoints([...local, ...remote]);
    const counts = tally(() => zb.pick(0, undefined), 1_000);
    assert.equal((counts.get('b1') ?? 0) + (counts.get('b2') ?? 0), 0);
    // One of four local endpoints down: 75 % × 1.4 ≥ 1, still all local.
    local[0]!.up = false;
    assert.equal(zb.localShare(), 1);
  });

  it('spills to other zones in proportion once the local zone is short of healthy endpoints', () => {
    const local = [endpoint('a1', { zone: 'a' }), endpoint('a2', { zone: 'a' })];
    const remote = [endpoint('b1', { zone: 'b' }), endpoint('b2', { zone: 'b' })];
    const zb = new ZoneAwareBalancer('a', make(), make(), seededRandom(11));
    zb.setEndpoints([...local, ...remote]);
    local[0]!.up = false; // 50 % healthy × 1.4 = 70 % stays local
    assert.ok(Math.abs(zb.localShare() - 0.7) < 1e-12);
    const counts = tally(() => zb.pick(0, undefined), 2_000);
    const localShare = (counts.get('a2') ?? 0) / 2_000;
    assert.ok(localShare > 0.65 && localShare < 0.75, `local share ${localShare}`);
    local[1]!.up = false;
    const all = tally(() => zb.pick(0, undefined), 100);
    assert.equal((all.get('b1') ?? 0) + (all.get('b2') ?? 0), 100, 'everything spills when the zone is down');
  });
});
