import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seededRandom, type Random } from '../../../src/clock.ts';
import {
  commandCanary,
  initialCanaryState,
  judgeCanary,
  resumeCanaryState,
  validateCanaryPolicy,
  type CanaryAction,
  type CanaryCommand,
  type CanaryDecision,
  type CanaryPhase,
  type CanaryPolicy,
  type CanaryReason,
  type CanaryState,
} from '../../../src/canary/canary-state.ts';
import { StepObservations, type SideSnapshot, type StepSnapshot } from '../../../src/canary/step-observations.ts';

const POLICY: CanaryPolicy = {
  steps: [5, 25, 50, 100],
  dwellMs: 60_000,
  minRequests: 100,
  maxSuccessRateDrop: 0.01,
  maxLatencyRatio: 1.5,
  latencyFloorMs: 5,
  latencyPercentile: 0.9,
};

function side(requests: number, failures: number, latencyMs: number | undefined): SideSnapshot {
  return { requests, failures, successRate: requests === 0 ? 1 : (requests - failures) / requests, latencyMs };
}

const NONE = side(0, 0, undefined);

function state(fields: Partial<CanaryState>): CanaryState {
  return { ...initialCanaryState(POLICY, 0), ...fields };
}

interface Behaviour {
  errorRate: number;
  latencyMs: (random: Random) => number;
}

const HEALTHY: Behaviour = { errorRate: 0, latencyMs: (random) => 10 + 10 * random() };

/**
 * Seeded traffic at `rps`, split by the state's weight, from `fromMs` for `seconds`, with a
 * judgement at the end of each second. Returns the final state and every decision but holds.
 */
function simulate(
  start: CanaryState,
  behaviour: { stable: Behaviour; canary: Behaviour },
  { fromMs = 0, seconds = 300, rps = 400, seed = 1, policy = POLICY } = {},
): { state: CanaryState; moves: (CanaryDecision & { at: number })[] } {
  const random = seededRandom(seed);
  const observations = new StepObservations();
  const moves: (CanaryDecision & { at: number })[] = [];
  let current = start;
  for (let s = 1; s <= seconds; s++) {
    for (let i = 0; i < rps; i++) {
      const which = random() * 100 < current.weight ? 'canary' : 'stable';
      const b = behaviour[which];
      observations.record(which, random() >= b.errorRate, b.latencyMs(random));
    }
    const at = fromMs + s * 1000;
    const out = judgeCanary(current, observations.snapshot(policy.latencyPercentile), policy, at);
    if (out.resetObservations) observations.reset();
    if (out.decision.action !== 'hold') moves.push({ ...out.decision, at });
    current = out.state;
  }
  return { state: current, moves };
}

const brief = (moves: (CanaryDecision & { at: number })[]): [number, CanaryAction, number, number, CanaryReason][] =>
  moves.map((m) => [m.at, m.action, m.from, m.to, m.reason]);

describe('canary rollout', () => {
  it('starts progressing at the first step', () => {
    assert.deepEqual(initialCanaryState(POLICY, 1234), {
      phase: 'progressing',
      stepIndex: 0,
      weight: 5,
      stepStartedAt: 1234,
      baseline: undefined,
      lastReason: 'started',
    });
  });

  it('judges nothing before minRequests canary requests, even past the dwell and failing', () => {
    const s = initialCanaryState(POLICY, 0);
    const out = judgeCanary(s, { stable: side(50, 0, 10), canary: side(99, 50, 500) }, POLICY, 120_000);
    assert.equal(out.decision.action, 'hold');
    assert.equal(out.decision.reason, 'waiting_for_requests');
    assert.equal(out.state, s, 'unchanged: no stable volume to take as a baseline either');
    assert.equal(out.resetObservations, false);
  });

  it('advances a healthy canary through 5 → 25 → 50 → 100 and promotes it after the last dwell', () => {
    const { state: end, moves } = simulate(initialCanaryState(POLICY, 0), { stable: HEALTHY, canary: HEALTHY });
    assert.deepEqual(brief(moves), [
      [60_000, 'advance', 5, 25, 'healthy'],
      [120_000, 'advance', 25, 50, 'healthy'],
      [180_000, 'advance', 50, 100, 'healthy'],
      [240_000, 'promote', 100, 100, 'healthy'],
    ]);
    assert.equal(end.phase, 'promoted');
    assert.equal(end.weight, 100);
    const promote = moves[3]!;
    assert.equal(promote.canary.requests, 60 * 400, 'all the traffic went to the canary at 100 %');
    assert.ok(promote.stable !== undefined && promote.stable.requests > 10_000, 'judged against the stable side of the 50 % step');
    assert.equal(promote.stable, end.baseline);
  });

  it('waits out the dwell to the millisecond', () => {
    const snapshot = { stable: side(1000, 0, 10), canary: side(100, 0, 10) };
    const s = state({ stepStartedAt: 5_000 });
    assert.equal(judgeCanary(s, snapshot, POLICY, 64_999).decision.reason, 'dwelling');
    const out = judgeCanary(s, snapshot, POLICY, 65_000);
    assert.deepEqual(
      [out.decision.action, out.state.weight, out.state.stepIndex, out.state.stepStartedAt, out.resetObservations],
      ['advance', 25, 1, 65_000, true],
    );
  });

  it('rolls back a canary failing 5 % against a stable failing none, within its first step, and for good', () => {
    const { state: end, moves } = simulate(initialCanaryState(POLICY, 0), {
      stable: HEALTHY,
      canary: { ...HEALTHY, errorRate: 0.05 },
    });
    assert.equal(moves.length, 1, JSON.stringify(brief(moves)));
    const [rollback] = moves;
    assert.deepEqual([rollback?.action, rollback?.from, rollback?.to, rollback?.reason], ['rollback', 5, 0, 'success_rate']);
    assert.ok(rollback !== undefined && rollback.at <= 10_000, `rolled back at ${rollback?.at} ms, without waiting for the dwell`);
    assert.ok(rollback.canary.successRate < 0.99 && rollback.stable?.successRate === 1);
    assert.deepEqual([end.phase, end.weight, end.lastReason], ['rolled_back', 0, 'success_rate']);
  });

  it('rolls back a canary three times slower', () => {
    const { state: end, moves } = simulate(initialCanaryState(POLICY, 0), {
      stable: HEALTHY,
      canary: { errorRate: 0, latencyMs: (random) => 30 + 30 * random() },
    });
    assert.deepEqual(
      brief(moves).map(([, action, from, to, reason]) => [action, from, to, reason]),
      [['rollback', 5, 0, 'latency']],
    );
    assert.equal(end.phase, 'rolled_back');
  });

  it('does not roll back 2 ms against 1 ms: under the floor, it is noise', () => {
    const snapshot = { stable: side(1000, 0, 1), canary: side(100, 0, 2) };
    const out = judgeCanary(initialCanaryState(POLICY, 0), snapshot, POLICY, 60_000);
    assert.equal(out.decision.action, 'advance');
    const noFloor = judgeCanary(initialCanaryState(POLICY, 0), snapshot, { ...POLICY, latencyFloorMs: 0 }, 60_000);
    assert.deepEqual([noFloor.decision.action, noFloor.decision.reason], ['rollback', 'latency'], 'the floor is what saved it');
  });

  it('keeps a rollback whatever later ticks say', () => {
    const rolled = judgeCanary(initialCanaryState(POLICY, 0), { stable: side(1000, 0, 10), canary: side(100, 10, 10) }, POLICY, 3_000).state;
    assert.deepEqual([rolled.phase, rolled.weight], ['rolled_back', 0]);
    for (let at = 4_000; at <= 600_000; at += 1_000) {
      const out = judgeCanary(rolled, { stable: side(10_000, 0, 10), canary: side(10_000, 0, 10) }, POLICY, at);
      assert.equal(out.state, rolled);
      assert.deepEqual([out.decision.action, out.decision.reason, out.decision.to, out.resetObservations], ['hold', 'rolled_back', 0, false]);
    }
  });

  describe('at 100 %, where the stable side gets no traffic', () => {
    const baseline = side(5_000, 0, 10);
    const atFull = state({ stepIndex: 3, weight: 100, baseline });

    it('rolls back a canary slower than the baseline', () => {
      const out = judgeCanary(atFull, { stable: NONE, canary: side(1_000, 0, 40) }, POLICY, 10_000);
      assert.deepEqual([out.decision.action, out.decision.reason, out.state.weight], ['rollback', 'latency', 0]);
      assert.equal(out.decision.stable, baseline);
    });

    it('rolls back a canary failing more than the baseline', () => {
      const out = judgeCanary(atFull, { stable: NONE, canary: side(1_000, 20, 10) }, POLICY, 10_000);
      assert.deepEqual([out.decision.action, out.decision.reason], ['rollback', 'success_rate']);
    });

    it('promotes a canary as good as the baseline after the dwell', () => {
      const out = judgeCanary(atFull, { stable: NONE, canary: side(1_000, 5, 12) }, POLICY, 60_000);
      assert.deepEqual([out.decision.action, out.state.phase, out.state.weight], ['promote', 'promoted', 100]);
      assert.equal(out.decision.stable, baseline);
    });

    it('without any baseline, holds the canary to a 100 % success rate and does not judge its latency', () => {
      const only = { ...POLICY, steps: [100] };
      const fresh = initialCanaryState(only, 0);
      const failing = judgeCanary(fresh, { stable: NONE, canary: side(1_000, 20, 10) }, only, 1_000);
      assert.deepEqual([failing.decision.action, failing.decision.reason, failing.decision.stable], ['rollback', 'success_rate', undefined]);
      const slow = judgeCanary(fresh, { stable: NONE, canary: side(1_000, 5, 5_000) }, only, 60_000);
      assert.deepEqual([slow.decision.action, slow.state.phase], ['promote', 'promoted']);
    });
  });

  it('takes the stable side as the baseline only when it has the volume', () => {
    const s = initialCanaryState(POLICY, 0);
    const first = side(100, 0, 10);
    const a = judgeCanary(s, { stable: first, canary: side(5, 0, 10) }, POLICY, 1_000);
    assert.equal(a.state.baseline, first);
    assert.equal(a.decision.reason, 'waiting_for_requests');
    const b = judgeCanary(a.state, { stable: side(99, 99, 10), canary: side(100, 0, 10) }, POLICY, 2_000);
    assert.equal(b.state.baseline, first, 'too few stable requests to replace it');
    assert.equal(b.decision.stable, first);
    assert.equal(b.decision.reason, 'dwelling');
  });

  describe('commands', () => {
    const NOW = 50_000;
    const start: Record<CanaryPhase, CanaryState> = {
      progressing: state({ stepIndex: 1, weight: 25, stepStartedAt: 10_000, lastReason: 'healthy' }),
      paused: state({ phase: 'paused', stepIndex: 1, weight: 25, stepStartedAt: 10_000, lastReason: 'operator' }),
      rolled_back: state({ phase: 'rolled_back', stepIndex: 1, weight: 0, stepStartedAt: 10_000, lastReason: 'success_rate' }),
      promoted: state({ phase: 'promoted', stepIndex: 3, weight: 100, stepStartedAt: 10_000, lastReason: 'healthy' }),
    };
    // phase, command → action, reason, phase after, weight after, observations reset
    const table: [CanaryPhase, CanaryCommand, CanaryAction, CanaryReason, CanaryPhase, number, boolean][] = [
      ['progressing', 'pause', 'pause', 'operator', 'paused', 25, false],
      ['progressing', 'resume', 'hold', 'not_paused', 'progressing', 25, false],
      ['progressing', 'promote', 'promote', 'operator', 'promoted', 100, true],
      ['progressing', 'rollback', 'rollback', 'operator', 'rolled_back', 0, true],
      ['progressing', 'restart', 'restart', 'operator', 'progressing', 5, true],
      ['paused', 'pause', 'hold', 'already_paused', 'paused', 25, false],
      ['paused', 'resume', 'resume', 'operator', 'progressing', 25, true],
      ['paused', 'promote', 'promote', 'operator', 'promoted', 100, true],
      ['paused', 'rollback', 'rollback', 'operator', 'rolled_back', 0, true],
      ['paused', 'restart', 'restart', 'operator', 'progressing', 5, true],
      ['rolled_back', 'pause', 'hold', 'not_progressing', 'rolled_back', 0, false],
      ['rolled_back', 'resume', 'hold', 'not_paused', 'rolled_back', 0, false],
      ['rolled_back', 'promote', 'promote', 'operator', 'promoted', 100, true],
      ['rolled_back', 'rollback', 'hold', 'already_rolled_back', 'rolled_back', 0, false],
      ['rolled_back', 'restart', 'restart', 'operator', 'progressing', 5, true],
      ['promoted', 'pause', 'hold', 'not_progressing', 'promoted', 100, false],
      ['promoted', 'resume', 'hold', 'not_paused', 'promoted', 100, false],
      ['promoted', 'promote', 'hold', 'already_promoted', 'promoted', 100, false],
      ['promoted', 'rollback', 'rollback', 'operator', 'rolled_back', 0, true],
      ['promoted', 'restart', 'restart', 'operator', 'progressing', 5, true],
    ];
    for (const [phase, command, action, reason, phaseAfter, weightAfter, reset] of table) {
      it(`${command} when ${phase}: ${action} (${reason})`, () => {
        const before = start[phase];
        const out = commandCanary(before, command, POLICY, NOW);
        assert.deepEqual(
          [out.decision.action, out.decision.reason, out.state.phase, out.state.weight, out.decision.from, out.decision.to, out.resetObservations],
          [action, reason, phaseAfter, weightAfter, before.weight, weightAfter, reset],
        );
        // A new step or phase starts its clock; a pause or a refusal leaves it alone.
        assert.equal(out.state.stepStartedAt, reset ? NOW : before.stepStartedAt);
        if (action === 'hold') assert.equal(out.state, before);
      });
    }

    it('pauses the judgement, and the dwell restarts on resume', () => {
      const unhealthy: StepSnapshot = { stable: side(1000, 0, 10), canary: side(1000, 500, 10) };
      const paused = commandCanary(start.progressing, 'pause', POLICY, 20_000).state;
      const held = judgeCanary(paused, unhealthy, POLICY, 100_000);
      assert.deepEqual([held.decision.action, held.decision.reason], ['hold', 'paused']);
      assert.equal(held.state, paused);
      const resumed = commandCanary(paused, 'resume', POLICY, 100_000).state;
      const healthy = { stable: side(1000, 0, 10), canary: side(200, 0, 10) };
      assert.equal(judgeCanary(resumed, healthy, POLICY, 159_999).decision.reason, 'dwelling');
      const advanced = judgeCanary(resumed, healthy, POLICY, 160_000);
      assert.deepEqual([advanced.decision.action, advanced.decision.from, advanced.decision.to], ['advance', 25, 50]);
    });

    it('holds in the promoted phase whatever the numbers', () => {
      const out = judgeCanary(start.promoted, { stable: NONE, canary: side(1000, 1000, 99_000) }, POLICY, 500_000);
      assert.deepEqual([out.decision.action, out.decision.reason, out.state], ['hold', 'promoted', start.promoted]);
    });

    it('restarts a rolled-back rollout from the first step, which then progresses again', () => {
      const restarted = commandCanary(start.rolled_back, 'restart', POLICY, NOW).state;
      const { moves } = simulate(restarted, { stable: HEALTHY, canary: HEALTHY }, { fromMs: NOW, seconds: 60 });
      assert.deepEqual(brief(moves), [[NOW + 60_000, 'advance', 5, 25, 'healthy']]);
    });

    it('reports the numbers it was given with a command', () => {
      const snapshot = { stable: side(300, 0, 10), canary: side(40, 1, 12) };
      const out = commandCanary(start.progressing, 'rollback', POLICY, NOW, snapshot);
      assert.equal(out.decision.canary, snapshot.canary);
      assert.equal(out.decision.stable, snapshot.stable);
      assert.deepEqual(commandCanary(start.progressing, 'rollback', POLICY, NOW).decision.canary, NONE);
    });
  });

  describe('policy validation', () => {
    it('accepts a sound policy', () => {
      assert.deepEqual(validateCanaryPolicy(POLICY), []);
      assert.deepEqual(validateCanaryPolicy({ ...POLICY, steps: [100], dwellMs: 0, latencyFloorMs: 0, maxSuccessRateDrop: 0 }), []);
    });

    const cases: [string, Partial<CanaryPolicy>, RegExp][] = [
      ['no steps', { steps: [] }, /steps/],
      ['steps not ascending', { steps: [25, 5, 100] }, /ascending/],
      ['a repeated step', { steps: [5, 5, 100] }, /ascending/],
      ['a zero weight', { steps: [0, 50, 100] }, /\(0, 100\]/],
      ['a weight above 100', { steps: [50, 100, 150] }, /\(0, 100\]|last step/],
      ['a last step below 100', { steps: [5, 50] }, /last step/],
      ['a negative dwell', { dwellMs: -1 }, /dwellMs/],
      ['a negative floor', { latencyFloorMs: -5 }, /latencyFloorMs/],
      ['no minimum volume', { minRequests: 0 }, /minRequests/],
      ['a latency ratio below 1', { maxLatencyRatio: 0.9 }, /maxLatencyRatio/],
      ['a NaN ratio', { maxLatencyRatio: Number.NaN }, /maxLatencyRatio/],
      ['a negative success-rate drop', { maxSuccessRateDrop: -0.01 }, /maxSuccessRateDrop/],
      ['a percentile of 1', { latencyPercentile: 1 }, /latencyPercentile/],
      ['a percentile of 0', { latencyPercentile: 0 }, /latencyPercentile/],
    ];
    for (const [name, change, pattern] of cases) {
      it(`rejects ${name}`, () => {
        const problems = validateCanaryPolicy({ ...POLICY, ...change });
        assert.ok(problems.length >= 1 && problems.every((p) => pattern.test(p)), JSON.stringify(problems));
      });
    }

    it('lists every problem, not just the first', () => {
      assert.equal(validateCanaryPolicy({ ...POLICY, steps: [50, 20], dwellMs: -1, latencyPercentile: 2 }).length, 4);
    });
  });
});

describe('resuming a canary after a restart (pure)', () => {
  it('takes up each phase at its step and weight, with the dwell started again', () => {
    const cases = [
      { phase: 'progressing', stepIndex: 2, weight: 50, lastReason: 'healthy' },
      { phase: 'paused', stepIndex: 1, weight: 25, lastReason: 'operator' },
      { phase: 'rolled_back', stepIndex: 0, weight: 0, lastReason: 'success_rate' },
      { phase: 'promoted', stepIndex: 3, weight: 100, lastReason: 'healthy' },
    ] as const;
    for (const saved of cases) {
      const state = resumeCanaryState(POLICY, saved, 7_000);
      assert.ok(state !== undefined, saved.phase);
      assert.deepEqual({ phase: state.phase, stepIndex: state.stepIndex, weight: state.weight, lastReason: state.lastReason }, saved);
      assert.equal(state.stepStartedAt, 7_000);
      assert.equal(state.baseline, undefined);
    }
    // A resumed rollback stays rolled back: nothing it sees moves it.
    const rolledBack = resumeCanaryState(POLICY, cases[2], 0)!;
    const healthy = {
      canary: { requests: 500, failures: 0, successRate: 1, latencyMs: 1 },
      stable: { requests: 500, failures: 0, successRate: 1, latencyMs: 1 },
    };
    assert.equal(judgeCanary(rolledBack, healthy, POLICY, 10_000_000).state.weight, 0);
  });

  it('refuses what does not fit the policy, so that the rollout starts over', () => {
    const bad: unknown[] = [
      undefined,
      'progressing',
      { phase: 'progressing', stepIndex: 1, weight: 50, lastReason: 'healthy' },
      { phase: 'progressing', stepIndex: 4, weight: 100, lastReason: 'healthy' },
      { phase: 'progressing', stepIndex: -1, weight: 5, lastReason: 'healthy' },
      { phase: 'progressing', stepIndex: 0.5, weight: 5, lastReason: 'healthy' },
      { phase: 'rolled_back', stepIndex: 0, weight: 5, lastReason: 'success_rate' },
      { phase: 'promoted', stepIndex: 3, weight: 50, lastReason: 'healthy' },
      { phase: 'exploded', stepIndex: 0, weight: 5, lastReason: 'healthy' },
      { phase: 'progressing', stepIndex: 0, weight: 5, lastReason: 'because' },
      { phase: 'progressing', stepIndex: 0, weight: '5', lastReason: 'started' },
    ];
    for (const saved of bad) assert.equal(resumeCanaryState(POLICY, saved, 0), undefined, JSON.stringify(saved));
  });
});
