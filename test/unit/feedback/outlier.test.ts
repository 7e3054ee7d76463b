import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seededRandom } from '../../../src/clock.ts';
import type { Outcome } from '../../../src/protocol/outcome.ts';
import { DEFAULT_OUTLIER, OutlierDetector, type Decision, type OutlierConfig } from '../../../src/feedback/outlier.ts';

const HOSTS = ['a', 'b', 'c', 'd'];

function detector(config: Partial<OutlierConfig> = {}, hosts = HOSTS): OutlierDetector {
  const d = new OutlierDetector({ ...DEFAULT_OUTLIER, ...config });
  d.step({ type: 'endpoints', addresses: hosts }, 0);
  return d;
}

function sample(
  d: OutlierDetector,
  endpoint: string,
  now: number,
  outcome: Outcome = 'success',
  latencyMs = 10,
  status = outcome === 'http_5xx' ? 500 : 200,
): Decision[] {
  return d.step({ type: 'sample', endpoint, outcome, latencyMs, status, overloaded: false }, now);
}

/**
 * Round-robin traffic at `rps` over `hosts` from `from` to `to` ms, ticking every 250 ms;
 * `behave` gives each sample's outcome and latency. Returns every decision with its time.
 */
function drive(
  d: OutlierDetector,
  from: number,
  to: number,
  rps: number,
  behave: (host: string, i: number, now: number) => [Outcome, number],
  hosts = HOSTS,
): { at: number; d: Decision }[] {
  const out: { at: number; d: Decision }[] = [];
  const step = 1000 / rps;
  let nextTick = from + 250;
  let i = 0;
  for (let now = from; now < to; now += step, i++) {
    const available = hosts.filter((h) => d.available(h));
    const host = available[i % available.length]!;
    const [outcome, latency] = behave(host, i, now);
    for (const x of sample(d, host, now, outcome, latency)) out.push({ at: now, d: x });
    while (nextTick <= now) {
      for (const x of d.step({ type: 'tick' }, nextTick)) out.push({ at: nextTick, d: x });
      nextTick += 250;
    }
  }
  return out;
}

const ejections = <T extends { d: Decision }>(events: T[]): T[] => events.filter((e) => e.d.type === 'eject');

describe('outlier detection', () => {
  it('decides nothing on the ticks of a quiet service, yet still returns an ejected host on time', () => {
    const d = detector({ baseEjectionMs: 10_000 });
    // An ejection from consecutive failures, then silence: the host must still come back.
    for (let i = 0; i < 5; i++) sample(d, 'a', i, 'connect_failed', 1);
    assert.equal(d.condition('a'), 'ejected');
    const decided: Decision[] = [];
    for (let t = 250; t <= 30_000; t += 250) decided.push(...d.step({ type: 'tick' }, t));
    assert.deepEqual(
      decided.map((x) => x.type),
      ['return'],
      'returned after its backoff, with nothing else decided',
    );
    assert.equal(d.condition('a'), 'active', 'probation ended on a later tick');
    // Settled now: a thousand more ticks change nothing.
    for (let t = 30_250; t <= 280_000; t += 250) assert.deepEqual(d.step({ type: 'tick' }, t), []);
  });

  it('ejects after consecutive gateway failures, at once', () => {
    const d = detector();
    for (let i = 0; i < 4; i++) assert.deepEqual(sample(d, 'a', i, 'connect_failed', 1), []);
    const [decision] = sample(d, 'a', 4, 'connect_failed', 1);
    assert.equal(decision?.type, 'eject');
    assert.equal(decision.reason, 'consecutive_gateway_failures');
    assert.equal(d.available('a'), false);
    assert.equal(d.condition('a'), 'ejected');
  });

  it('resets the consecutive count on success', () => {
    const d = detector();
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 4; i++) sample(d, 'a', round * 10 + i, 'reset');
      sample(d, 'a', round * 10 + 5, 'success');
    }
    assert.equal(d.condition('a'), 'active');
  });

  it('ejects consecutive 5xx and server-side gRPC errors, not client errors', () => {
    const d = detector();
    for (let i = 0; i < 10; i++) sample(d, 'b', i, 'success', 5, 404);
    assert.equal(d.condition('b'), 'active');
    for (let i = 0; i < 5; i++) sample(d, 'b', 20 + i, i % 2 === 0 ? 'http_5xx' : 'grpc_error', 5, i % 2 === 0 ? 500 : 200);
    assert.equal(d.condition('b'), 'ejected');
  });

  it('ejects a host failing 30 % within 2 s at 200 req/s, and only that host', () => {
    const d = detector();
    const random = seededRandom(42);
    const events = drive(d, 0, 5_000, 200, (host) => [host === 'c' && random() < 0.3 ? 'http_5xx' : 'success', 10]);
    const ejected = ejections(events);
    assert.equal(ejected.length, 1, JSON.stringify(ejected));
    const first = ejected[0]!;
    assert.equal(first.d.type === 'eject' && first.d.endpoint, 'c');
    assert.equal(first.d.type === 'eject' && first.d.reason, 'failure_percentage');
    assert.ok(first.at < 2_000, `ejected at ${first.at} ms`);
  });

  it('ejects a success-rate outlier (below mean − 1.9σ of five peers) that stays under the failure bar', () => {
    const five = ['a', 'b', 'c', 'd', 'e'];
    const d = detector({}, five);
    // e fails every 8th request (12.5 %: under the 20 % failure-percentage bar); the rest never do.
    const events = drive(d, 0, 4_000, 400, (host, i) => [host === 'e' && Math.floor(i / 5) % 8 === 0 ? 'http_5xx' : 'success', 5], five);
    const ejected = ejections(events);
    assert.equal(ejected.length, 1, JSON.stringify(ejected));
    const e = ejected[0]!.d;
    assert.ok(e.type === 'eject' && e.endpoint === 'e' && e.reason === 'success_rate', JSON.stringify(e));
  });

  it('ejects a host 5× slower than its peers on latency', () => {
    const d = detector();
    const random = seededRandom(7);
    const events = drive(d, 0, 3_000, 200, (host) => ['success', (host === 'd' ? 50 : 10) * (0.8 + 0.4 * random())]);
    const ejected = ejections(events);
    assert.equal(ejected.length, 1);
    const e = ejected[0]!.d;
    assert.ok(e.type === 'eject' && e.endpoint === 'd' && e.reason === 'latency');
    assert.ok(e.detail['percentileMs']! > 3 * e.detail['peerMedianMs']!);
  });

  it('does not eject fast hosts over a small absolute difference (latency floor)', () => {
    const d = detector();
    const events = drive(d, 0, 3_000, 200, (host) => ['success', host === 'd' ? 2 : 0.4]);
    assert.deepEqual(ejections(events), []);
  });

  it('does not flap under noise: 3 % random failures and jittery latency on every host', () => {
    const d = detector();
    const random = seededRandom(3);
    const events = drive(d, 0, 60_000, 200, () => [random() < 0.03 ? (random() < 0.5 ? 'http_5xx' : 'reset') : 'success', 5 + 10 * random()]);
    assert.deepEqual(
      events.filter((e) => e.d.type !== 'panic'),
      [],
    );
  });

  it('never ejects past the max ejection share, and says so', () => {
    const d = detector({ maxEjectionShare: 0.5 });
    const decisions: Decision[] = [];
    for (const host of HOSTS) for (let i = 0; i < 5; i++) decisions.push(...sample(d, host, i, 'connect_failed'));
    assert.equal(decisions.filter((x) => x.type === 'eject').length, 2);
    const skipped = decisions.filter((x) => x.type === 'eject_skipped');
    assert.equal(skipped.length, 2);
    assert.deepEqual(
      HOSTS.map((h) => d.available(h)),
      [false, false, true, true],
    );
  });

  it('always allows one ejection, even when the share rounds to zero', () => {
    const d = detector({ maxEjectionShare: 0.1 }, ['a', 'b', 'c']);
    for (let i = 0; i < 5; i++) sample(d, 'a', i, 'connect_failed');
    assert.equal(d.condition('a'), 'ejected');
  });

  it('enters panic mode when too few endpoints are available, and leaves it', () => {
    const d = detector({ panicThreshold: 0.5 }, ['a', 'b', 'c']);
    const decisions: Decision[] = [];
    decisions.push(...d.step({ type: 'health', endpoint: 'a', healthy: false }, 0));
    assert.equal(d.panic, false);
    decisions.push(...d.step({ type: 'health', endpoint: 'b', healthy: false }, 1));
    assert.equal(d.panic, true);
    assert.ok(decisions.some((x) => x.type === 'panic' && x.on && x.available === 1 && x.total === 3));
    assert.equal(d.available('a'), true, 'panic: every endpoint is usable');
    d.step({ type: 'health', endpoint: 'b', healthy: true }, 2);
    assert.equal(d.panic, false);
    assert.equal(d.available('a'), false);
  });

  it('returns after base × ejections (capped), on probation with stricter thresholds', () => {
    const d = detector({ baseEjectionMs: 10_000, maxEjectionMs: 25_000, probationMs: 10_000 });
    const ejectAt = (t: number): Decision[] => {
      const all: Decision[] = [];
      for (let i = 0; i < 5; i++) all.push(...sample(d, 'a', t + i, 'connect_failed'));
      return all;
    };
    const first = ejectAt(0).find((x) => x.type === 'eject');
    assert.equal(first?.type === 'eject' && first.durationMs, 10_000);
    assert.deepEqual(d.step({ type: 'tick' }, 9_999), []);
    const back = d.step({ type: 'tick' }, 10_005);
    assert.deepEqual(back, [{ type: 'return', endpoint: 'a', reason: 'backoff_elapsed', probationMs: 10_000 }]);
    assert.equal(d.condition('a'), 'probation');
    // On probation, 3 consecutive failures (half of 5, rounded up) are enough.
    for (let i = 0; i < 2; i++) sample(d, 'a', 11_000 + i, 'connect_failed');
    assert.equal(d.condition('a'), 'probation');
    const second = sample(d, 'a', 11_010, 'connect_failed').find((x) => x.type === 'eject');
    assert.equal(second?.type === 'eject' && second.durationMs, 20_000);
    d.step({ type: 'tick' }, 31_020);
    const third = ejectAt(31_100).find((x) => x.type === 'eject');
    assert.equal(third?.type === 'eject' && third.durationMs, 25_000, 'capped at maxEjectionMs');
    // Probation ends quietly after its time.
    d.step({ type: 'tick' }, 56_200);
    d.step({ type: 'tick' }, 66_300);
    assert.equal(d.condition('a'), 'active');
  });

  it('lets a health check hold an endpoint out and bring it back early', () => {
    const d = detector();
    for (let i = 0; i < 5; i++) sample(d, 'a', i, 'connect_failed');
    assert.equal(d.condition('a'), 'ejected');
    // Still failing health checks when the backoff ends: stays out.
    d.step({ type: 'health', endpoint: 'a', healthy: false }, 100);
    d.step({ type: 'tick' }, 20_000);
    assert.equal(d.condition('a'), 'unhealthy');
    const back = d.step({ type: 'health', endpoint: 'a', healthy: true }, 20_100);
    assert.deepEqual(back, [{ type: 'return', endpoint: 'a', reason: 'health_check_passed', probationMs: DEFAULT_OUTLIER.probationMs }]);
  });

  it('ejects on an overload signal from the endpoint', () => {
    const d = detector();
    const decisions = d.step({ type: 'sample', endpoint: 'b', outcome: 'http_5xx', latencyMs: 1, status: 503, overloaded: true }, 0);
    assert.equal(decisions[0]?.type === 'eject' && decisions[0].reason, 'overloaded');
  });

  it('forgets endpoints that leave and starts new ones active', () => {
    const d = detector();
    for (let i = 0; i < 5; i++) sample(d, 'a', i, 'connect_failed');
    d.step({ type: 'endpoints', addresses: ['b', 'c', 'e'] }, 10);
    assert.equal(d.view('a', 10), undefined);
    assert.equal(d.condition('e'), 'active');
  });
});

describe('health check verdicts', () => {
  it('flips after the configured number of consecutive results, not on a single blip', async () => {
    const { HealthVerdict } = await import('../../../src/feedback/health-check.ts');
    const v = new HealthVerdict({ kind: 'http', path: '/', intervalMs: 1, timeoutMs: 1, unhealthyThreshold: 3, healthyThreshold: 2 });
    assert.deepEqual(
      [false, false, true, false, false].map((r) => v.record(r)),
      [undefined, undefined, undefined, undefined, undefined],
    );
    assert.equal(v.record(false), false, 'third failure in a row');
    assert.equal(v.record(true), undefined);
    assert.equal(v.record(true), true);
  });
});
