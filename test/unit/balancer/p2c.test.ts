import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ewmaCost, leastRequestCost, P2CBalancer } from '../../../src/balancer/p2c.ts';
import { PeakEwma } from '../../../src/balancer/peak-ewma.ts';
import { NO_SLOW_START } from '../../../src/balancer/slow-start.ts';
import { seededRandom } from '../../../src/clock.ts';
import { endpoint, tally, type TestEndpoint } from './fixtures.ts';

/**
 * Simulates a closed loop on a fake clock: each tick one request is picked and finishes
 * after its endpoint's latency; outcomes come from `fails`. Returns picks per endpoint.
 */
function simulate(
  balancer: P2CBalancer,
  latencyMs: Record<string, number>,
  fails: (address: string, i: number) => boolean,
  requests: number,
  intervalMs: number,
): Map<string, number> {
  const counts = new Map<string, number>();
  const finishing: { at: number; e: TestEndpoint; started: number; failed: boolean }[] = [];
  for (let i = 0; i < requests; i++) {
    const now = i * intervalMs;
    finishing.sort((a, b) => a.at - b.at);
    while (finishing.length > 0 && finishing[0]!.at <= now) {
      const f = finishing.shift()!;
      f.e.inFlight--;
      f.e.record(f.failed ? 'http_5xx' : 'success', f.at - f.started, f.at);
    }
    const e = balancer.pick(now) as TestEndpoint;
    counts.set(e.address, (counts.get(e.address) ?? 0) + 1);
    e.inFlight++;
    finishing.push({ at: now + latencyMs[e.address]!, e, started: now, failed: fails(e.address, i) });
  }
  return counts;
}

describe('P2C + peak EWMA', () => {
  it('is deterministic for a given seed', () => {
    const run = (): string[] => {
      const b = new P2CBalancer('p2c-ewma', ewmaCost, seededRandom(7), NO_SLOW_START);
      b.setEndpoints([endpoint('a'), endpoint('b'), endpoint('c')]);
      return Array.from({ length: 20 }, () => b.pick(0)!.address);
    };
    assert.deepEqual(run(), run());
  });

  it('sends a 10× slower endpoint well under 10 % of requests once warmed up', () => {
    const eps = [endpoint('a'), endpoint('b'), endpoint('slow')];
    const b = new P2CBalancer('p2c-ewma', ewmaCost, seededRandom(1), NO_SLOW_START);
    b.setEndpoints(eps);
    simulate(b, { a: 10, b: 10, slow: 100 }, () => false, 2_000, 5); // warm-up: 10 s at 200 req/s
    const counts = simulate(b, { a: 10, b: 10, slow: 100 }, () => false, 2_000, 5);
    const share = (counts.get('slow') ?? 0) / 2_000;
    assert.ok(share < 0.1, `slow share ${share}`);
  });

  it('does not reward an endpoint that fails fast (linkerd/linkerd2#11669)', () => {
    const eps = [endpoint('a'), endpoint('b'), endpoint('fastfail')];
    const b = new P2CBalancer('p2c-ewma', ewmaCost, seededRandom(2), NO_SLOW_START);
    b.setEndpoints(eps);
    // The failing endpoint answers 10× faster than its peers, but 30 % of its answers are 500s.
    const fails = (address: string, i: number): boolean => address === 'fastfail' && i % 10 < 3;
    simulate(b, { a: 20, b: 20, fastfail: 2 }, fails, 2_000, 5);
    const counts = simulate(b, { a: 20, b: 20, fastfail: 2 }, fails, 2_000, 5);
    const share = (counts.get('fastfail') ?? 0) / 2_000;
    assert.ok(share < 1 / 3, `fast-failing endpoint got ${share}, more than an even share`);
    // Without the failure penalty the same endpoint takes the lion's share: the bug this avoids.
    const naive = [
      endpoint('a', { ewma: { decayMs: 10_000, defaultRttMs: 30, failurePenalty: 0, failureAlpha: 0 } }),
      endpoint('b', { ewma: { decayMs: 10_000, defaultRttMs: 30, failurePenalty: 0, failureAlpha: 0 } }),
      endpoint('fastfail', { ewma: { decayMs: 10_000, defaultRttMs: 30, failurePenalty: 0, failureAlpha: 0 } }),
    ];
    const nb = new P2CBalancer('p2c-ewma', ewmaCost, seededRandom(2), NO_SLOW_START);
    nb.setEndpoints(naive);
    simulate(nb, { a: 20, b: 20, fastfail: 2 }, fails, 2_000, 5);
    const naiveShare = (simulate(nb, { a: 20, b: 20, fastfail: 2 }, fails, 2_000, 5).get('fastfail') ?? 0) / 2_000;
    assert.ok(naiveShare > 0.5, `without the penalty it would get ${naiveShare}`);
  });

  it('never picks an ineligible endpoint, and finds the last eligible one', () => {
    const eps = [endpoint('a'), endpoint('b'), endpoint('c'), endpoint('d')];
    const b = new P2CBalancer('p2c-ewma', ewmaCost, seededRandom(3), NO_SLOW_START);
    b.setEndpoints(eps);
    eps[0]!.up = false;
    eps[1]!.up = false;
    eps[2]!.up = false;
    assert.deepEqual([...tally(() => b.pick(0), 50).keys()], ['d']);
    eps[3]!.up = false;
    assert.equal(b.pick(0), undefined);
  });

  it('starts new endpoints at the default estimate so they are probed, not flooded', () => {
    const known = endpoint('known');
    known.load.observe(5, false, 0);
    const fresh = endpoint('fresh');
    assert.equal(fresh.load.rttAt(0), 30);
    const b = new P2CBalancer('p2c-ewma', ewmaCost, seededRandom(4), NO_SLOW_START);
    b.setEndpoints([known, fresh]);
    assert.equal(b.pick(0)?.address, 'known');
  });
});

describe('peak EWMA', () => {
  const opts = { decayMs: 10_000, defaultRttMs: 30, failurePenalty: 10, failureAlpha: 0.1 };
  it('replaces the default estimate with the first sample', () => {
    const m = new PeakEwma(opts, 0);
    assert.equal(m.rttAt(0), 30);
    m.observe(4, false, 1);
    assert.equal(m.rttAt(1), 4);
  });
  it('jumps to a slower sample and decays towards faster ones with time', () => {
    const m = new PeakEwma(opts, 0);
    m.observe(100, false, 0);
    assert.equal(m.rttAt(0), 100);
    m.observe(10, false, 10_000);
    assert.ok(Math.abs(m.rttAt(10_000) - (100 / Math.E + 10 * (1 - 1 / Math.E))) < 1e-9);
    m.observe(500, false, 10_001);
    assert.equal(m.rttAt(10_001), 500, 'peak: a slow sample counts at once');
  });
  it('multiplies the cost by in-flight + 1 and by the failure penalty', () => {
    const m = new PeakEwma(opts, 0);
    m.observe(10, false, 0);
    assert.equal(m.cost(0, 0), 10);
    assert.equal(m.cost(3, 0), 40);
    m.observe(10, true, 0);
    assert.ok(Math.abs(m.failureRateAt(0) - 0.1) < 1e-12);
    assert.ok(Math.abs(m.cost(0, 0) - 10 * (1 + 10 * 0.1)) < 1e-9);
  });
  it('decays towards zero while idle, so a shunned endpoint is probed again', () => {
    const m = new PeakEwma(opts, 0);
    m.observe(1_000, true, 0);
    assert.ok(m.cost(0, 60_000) < 5, `cost after a minute idle: ${m.cost(0, 60_000)}`);
  });
});

describe('P2C least-request', () => {
  it('prefers the endpoint with fewer requests in flight, relative to weight', () => {
    const a = endpoint('a');
    const b = endpoint('b', { weight: 4 });
    a.inFlight = 1;
    b.inFlight = 3; // (3+1)/4 = 1 < (1+1)/1 = 2
    const lr = new P2CBalancer('least-request', leastRequestCost, seededRandom(5), NO_SLOW_START);
    lr.setEndpoints([a, b]);
    assert.equal(lr.pick(0)?.address, 'b');
    b.inFlight = 8;
    assert.equal(lr.pick(0)?.address, 'a');
  });
});
