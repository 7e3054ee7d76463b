import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seededRandom } from '../../../src/clock.ts';
import { DEFAULT_CONCURRENCY, GradientLimiter, type LimitChange } from '../../../src/feedback/concurrency.ts';
import { Admission } from '../../../src/stack/admission.ts';

/** Feeds `seconds` of samples at 1 per ms with latency from `rtt`, in-flight at the limit. */
function run(limiter: GradientLimiter, from: number, seconds: number, rtt: (now: number) => number, inFlight = (l: number) => l): LimitChange[] {
  const changes: LimitChange[] = [];
  for (let now = from; now < from + seconds * 1000; now++) {
    const c = limiter.sample(rtt(now), inFlight(limiter.limit), now);
    if (c !== undefined) changes.push(c);
  }
  return changes;
}

describe('gradient concurrency limit', () => {
  it('grows while latency holds and the limit is in use', () => {
    const l = new GradientLimiter({ ...DEFAULT_CONCURRENCY, initialLimit: 20 });
    run(l, 0, 10, () => 10);
    assert.ok(l.limit > 40, `limit ${l.limit}`);
  });

  it('does not grow a limit that is not used', () => {
    const l = new GradientLimiter({ ...DEFAULT_CONCURRENCY, initialLimit: 20 });
    run(
      l,
      0,
      10,
      () => 10,
      () => 3,
    );
    assert.equal(l.limit, 20);
  });

  it('shrinks when latency climbs, by at most a quarter per window', () => {
    const l = new GradientLimiter({ ...DEFAULT_CONCURRENCY, initialLimit: 200 });
    run(l, 0, 5, () => 10);
    const before = l.limit;
    const changes = run(l, 5_000, 3, () => 40);
    assert.ok(l.limit < before / 2, `limit ${before} → ${l.limit}`);
    for (const c of changes) assert.ok(c.to >= Math.floor(c.from * 0.75) - 1, `step ${c.from} → ${c.to}`);
  });

  it('recovers after a sustained degradation ends (envoyproxy/envoy#46532)', () => {
    const l = new GradientLimiter({ ...DEFAULT_CONCURRENCY, initialLimit: 100 });
    run(l, 0, 10, () => 10);
    const healthy = l.limit;
    run(l, 10_000, 120, () => 50); // two minutes, five times slower
    const degraded = l.limit;
    run(l, 130_000, 60, () => 10);
    assert.ok(l.limit >= healthy, `limit ${healthy} → ${degraded} during → ${l.limit} one minute after`);
  });

  it('does not shed or shrink under ordinary latency noise (no min-RTT probing)', () => {
    const l = new GradientLimiter({ ...DEFAULT_CONCURRENCY, initialLimit: 100 });
    const random = seededRandom(5);
    const changes = run(l, 0, 60, () => 10 * (0.7 + 0.6 * random()));
    assert.equal(changes.filter((c) => c.to < c.from).length, 0);
    assert.ok(l.limit >= 100);
  });

  it('stays within its bounds', () => {
    const l = new GradientLimiter({ ...DEFAULT_CONCURRENCY, initialLimit: 30, minLimit: 20, maxLimit: 50 });
    run(l, 0, 60, () => 1);
    assert.equal(l.limit, 50);
    const changes = run(l, 60_000, 5, () => 100);
    assert.equal(Math.min(...changes.map((c) => c.to)), 20, 'a 100× latency step drives it to minLimit, not below');
  });
});

describe('admission queue', () => {
  const limiter = (limit: number) => new GradientLimiter({ ...DEFAULT_CONCURRENCY, initialLimit: limit, minLimit: 1 });
  const events = () => {
    const shed: string[] = [];
    return { shed, limitChanged: () => {}, onShed: shed, shedFn: (r: string) => shed.push(r) };
  };

  it('admits up to the limit, queues the rest in order, and sheds when the queue is full', async () => {
    const e = events();
    const gate = new Admission(limiter(2), { size: 2, maxWaitMs: 10_000 }, () => 0, { limitChanged: () => {}, shed: (r) => e.shed.push(r) });
    assert.equal(gate.acquire(1e9), undefined);
    assert.equal(gate.acquire(1e9), undefined);
    const order: number[] = [];
    const third = gate.acquire(1e9)!.then(() => order.push(3));
    const fourth = gate.acquire(1e9)!.then(() => order.push(4));
    await assert.rejects(gate.acquire(1e9)!, (err: { code: string }) => err.code === 'overloaded');
    assert.deepEqual(e.shed, ['queue_full']);
    gate.release(1, true);
    gate.release(1, true);
    await Promise.all([third, fourth]);
    assert.deepEqual(order, [3, 4]);
  });

  it('does not shed an ordinary burst with the default queue (linkerd/linkerd2#11055)', async () => {
    const e = events();
    const gate = new Admission(limiter(100), { size: 1_000, maxWaitMs: 1_000 }, () => 0, { limitChanged: () => {}, shed: (r) => e.shed.push(r) });
    // 300 requests at once, each finishing 2 ms after it starts: 2× and 3× over the limit.
    const all = Array.from({ length: 300 }, async () => {
      const waiting = gate.acquire(1e9);
      if (waiting !== undefined) await waiting;
      await new Promise((r) => setTimeout(r, 2));
      gate.release(2, true);
    });
    await Promise.all(all);
    assert.deepEqual(e.shed, []);
  });

  it('sheds a queued request after the wait bound', async () => {
    const e = events();
    const gate = new Admission(limiter(1), { size: 10, maxWaitMs: 20 }, () => 0, { limitChanged: () => {}, shed: (r) => e.shed.push(r) });
    void gate.acquire(1e9);
    const started = Date.now();
    await assert.rejects(gate.acquire(1e9)!, (err: { code: string; retryAfterSeconds: number }) => err.code === 'overloaded' && err.retryAfterSeconds === 1);
    assert.ok(Date.now() - started < 1_000);
    assert.deepEqual(e.shed, ['queue_timeout']);
    assert.equal(gate.queued, 0);
  });
});
