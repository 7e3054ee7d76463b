/**
 * The canary rollout of one service as a pure state machine, judged by this
 * host on its own observations of the current step. It reads no clock and
 * keeps no counters: `now` and the step's snapshot come with every call, and
 * out come the next state and one decision with the numbers behind it, so the
 * same script of ticks always yields the same rollout. The controller owns the
 * timer, the counters (it resets them when told) and the weights it applies.
 *
 * Rules: nothing is judged before `minRequests` canary requests in the step; the
 * canary is rolled back at once, without waiting for the dwell, when its success
 * rate falls more than `maxSuccessRateDrop` below the stable side's, or its
 * latency percentile exceeds both `maxLatencyRatio` × and `latencyFloorMs` + the
 * stable side's; otherwise it advances a step after `dwellMs`, and is promoted
 * after a healthy dwell at the last step. A rollback is sticky: only an operator's
 * restart command (or a new policy) starts over; a meshd restart resumes where it was.
 */
import type { SideSnapshot, StepSnapshot } from './step-observations.ts';

export interface CanaryPolicy {
  /** Canary weights in percent, strictly ascending, each in (0, 100]; the last is 100. */
  readonly steps: readonly number[];
  /** Minimum time at a step before advancing. */
  readonly dwellMs: number;
  /** Canary requests needed in a step before any judgement. */
  readonly minRequests: number;
  /** How far below the stable side's success rate the canary's may be (0.01: one point). */
  readonly maxSuccessRateDrop: number;
  /** The canary's latency may be at most this × the stable side's … */
  readonly maxLatencyRatio: number;
  /** … or the stable side's + this, whichever is larger: 2 ms against 1 ms is noise. */
  readonly latencyFloorMs: number;
  /** The latency percentile compared, in (0, 1). */
  readonly latencyPercentile: number;
}

const CANARY_PHASES = ['progressing', 'paused', 'rolled_back', 'promoted'] as const;
export type CanaryPhase = (typeof CANARY_PHASES)[number];

export type CanaryCommand = 'pause' | 'resume' | 'promote' | 'rollback' | 'restart';

export type CanaryAction = 'advance' | 'hold' | 'rollback' | 'promote' | 'pause' | 'resume' | 'restart';

const CANARY_REASONS = [
  'started',
  'waiting_for_requests',
  'dwelling',
  'healthy',
  'success_rate',
  'latency',
  'operator',
  'not_progressing',
  'already_paused',
  'not_paused',
  'already_promoted',
  'already_rolled_back',
  'paused',
  'rolled_back',
  'promoted',
] as const;
export type CanaryReason = (typeof CANARY_REASONS)[number];

export interface CanaryState {
  readonly phase: CanaryPhase;
  readonly stepIndex: number;
  /** Percent of the traffic sent to the canary now. */
  readonly weight: number;
  /** When the current step or phase began; the dwell counts from here (a pause does not restart it). */
  readonly stepStartedAt: number;
  /** The last stable side seen with ≥ minRequests: the reference when the stable side gets no traffic (at 100 %). */
  readonly baseline: SideSnapshot | undefined;
  /** Why the state last changed. */
  readonly lastReason: CanaryReason;
}

export interface CanaryDecision {
  readonly action: CanaryAction;
  /** Canary weight before the decision. */
  readonly from: number;
  /** Canary weight after it. */
  readonly to: number;
  readonly reason: CanaryReason;
  readonly canary: SideSnapshot;
  /** The stable numbers the canary was held against: this step's, else the baseline, else none (then a 100 % success rate). */
  readonly stable: SideSnapshot | undefined;
}

export interface CanaryOutcome {
  readonly state: CanaryState;
  readonly decision: CanaryDecision;
  /** Whether the caller must clear its step observations: a new step or phase has begun. */
  readonly resetObservations: boolean;
}

const NO_TRAFFIC: SideSnapshot = Object.freeze({ requests: 0, failures: 0, successRate: 1, latencyMs: undefined });

/** Problems with `policy`, as sentences for an operator; empty when it is usable. */
export function validateCanaryPolicy(policy: CanaryPolicy): string[] {
  const problems: string[] = [];
  const { steps } = policy;
  if (steps.length === 0) problems.push('steps must list at least one weight');
  steps.forEach((weight, i) => {
    if (!(weight > 0 && weight <= 100)) problems.push(`steps[${i}] is ${weight}: a weight must be in (0, 100]`);
    if (i > 0 && !(weight > steps[i - 1]!)) problems.push(`steps[${i}] is ${weight}: weights must be strictly ascending`);
  });
  if (steps.length > 0 && steps[steps.length - 1] !== 100) problems.push('the last step must be 100');
  const atLeast = (name: keyof CanaryPolicy, value: number, min: number): void => {
    if (!(Number.isFinite(value) && value >= min)) problems.push(`${name} is ${value}: it must be a number ≥ ${min}`);
  };
  atLeast('dwellMs', policy.dwellMs, 0);
  atLeast('latencyFloorMs', policy.latencyFloorMs, 0);
  // Judging on no requests would promote a canary nobody called; below 1 the ratio would reject an identical build.
  atLeast('minRequests', policy.minRequests, 1);
  atLeast('maxLatencyRatio', policy.maxLatencyRatio, 1);
  if (!(policy.maxSuccessRateDrop >= 0 && policy.maxSuccessRateDrop <= 1)) {
    problems.push(`maxSuccessRateDrop is ${policy.maxSuccessRateDrop}: it must be in [0, 1]`);
  }
  if (!(policy.latencyPercentile > 0 && policy.latencyPercentile < 1)) {
    problems.push(`latencyPercentile is ${policy.latencyPercentile}: it must be in (0, 1)`);
  }
  return problems;
}

/** A rollout just started: progressing at the first step. */
export function initialCanaryState(policy: CanaryPolicy, now: number): CanaryState {
  return { phase: 'progressing', stepIndex: 0, weight: policy.steps[0] ?? 100, stepStartedAt: now, baseline: undefined, lastReason: 'started' };
}

/** What a restart keeps of a rollout (./canary-store.ts writes it after every change). */
export interface CanaryProgress {
  readonly phase: CanaryPhase;
  readonly stepIndex: number;
  readonly weight: number;
  readonly lastReason: CanaryReason;
}

export function canaryProgress(state: CanaryState): CanaryProgress {
  return { phase: state.phase, stepIndex: state.stepIndex, weight: state.weight, lastReason: state.lastReason };
}

/**
 * A rollout saved before a restart, taken up again: the same phase, step and weight, with the
 * step's dwell started anew (its observations were not kept). undefined when `saved` does not fit
 * the policy — a weight that is not its step's, a step past the last — and the rollout starts over.
 */
export function resumeCanaryState(policy: CanaryPolicy, saved: unknown, now: number): CanaryState | undefined {
  if (typeof saved !== 'object' || saved === null) return undefined;
  const { phase, stepIndex, weight, lastReason } = saved as Record<string, unknown>;
  if (!CANARY_PHASES.some((p) => p === phase) || !CANARY_REASONS.some((r) => r === lastReason)) return undefined;
  if (typeof stepIndex !== 'number' || !Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= policy.steps.length) return undefined;
  const expected = phase === 'rolled_back' ? 0 : phase === 'promoted' ? 100 : policy.steps[stepIndex];
  if (typeof weight !== 'number' || weight !== expected) return undefined;
  return { phase: phase as CanaryPhase, stepIndex, weight, stepStartedAt: now, baseline: undefined, lastReason: lastReason as CanaryReason };
}

/** One tick: judges the step so far and decides to hold, advance, promote or roll back. */
export function judgeCanary(state: CanaryState, snapshot: StepSnapshot, policy: CanaryPolicy, now: number): CanaryOutcome {
  const { canary } = snapshot;
  if (state.phase !== 'progressing') return hold(state, state.phase, canary, referenceOf(state, snapshot, policy));
  const stable = referenceOf(state, snapshot, policy);
  const current = stable === state.baseline ? state : { ...state, baseline: stable };
  if (canary.requests < policy.minRequests) return hold(current, 'waiting_for_requests', canary, stable);
  const failure = failureOf(canary, stable, policy);
  if (failure !== undefined) return change(current, 'rollback', failure, { phase: 'rolled_back', weight: 0 }, now, canary, stable);
  if (now - state.stepStartedAt < policy.dwellMs) return hold(current, 'dwelling', canary, stable);
  const next = state.stepIndex + 1;
  const weight = policy.steps[next];
  if (weight === undefined) return change(current, 'promote', 'healthy', { phase: 'promoted', weight: 100 }, now, canary, stable);
  return change(current, 'advance', 'healthy', { stepIndex: next, weight }, now, canary, stable);
}

/**
 * An operator's command. `snapshot`, when given, only fills the decision's numbers: commands
 * are obeyed, not judged.
 */
export function commandCanary(state: CanaryState, command: CanaryCommand, policy: CanaryPolicy, now: number, snapshot?: StepSnapshot): CanaryOutcome {
  const canary = snapshot?.canary ?? NO_TRAFFIC;
  const stable = referenceOf(state, snapshot, policy);
  switch (command) {
    case 'pause':
      if (state.phase !== 'progressing') return hold(state, state.phase === 'paused' ? 'already_paused' : 'not_progressing', canary, stable);
      // The step keeps its start and its observations: a pause is not a verdict on them.
      return {
        state: { ...state, phase: 'paused', lastReason: 'operator' },
        decision: { action: 'pause', from: state.weight, to: state.weight, reason: 'operator', canary, stable },
        resetObservations: false,
      };
    case 'resume':
      if (state.phase !== 'paused') return hold(state, 'not_paused', canary, stable);
      return change(state, 'resume', 'operator', { phase: 'progressing' }, now, canary, stable);
    case 'promote':
      if (state.phase === 'promoted') return hold(state, 'already_promoted', canary, stable);
      return change(state, 'promote', 'operator', { phase: 'promoted', stepIndex: Math.max(0, policy.steps.length - 1), weight: 100 }, now, canary, stable);
    case 'rollback':
      if (state.phase === 'rolled_back') return hold(state, 'already_rolled_back', canary, stable);
      return change(state, 'rollback', 'operator', { phase: 'rolled_back', weight: 0 }, now, canary, stable);
    case 'restart':
      return change(state, 'restart', 'operator', { phase: 'progressing', stepIndex: 0, weight: policy.steps[0] ?? 100 }, now, canary, stable);
  }
}

/** This step's stable side when it has the volume to be trusted, else the last one that had. */
function referenceOf(state: CanaryState, snapshot: StepSnapshot | undefined, policy: CanaryPolicy): SideSnapshot | undefined {
  const stable = snapshot?.stable;
  return stable !== undefined && stable.requests >= policy.minRequests ? stable : state.baseline;
}

function failureOf(canary: SideSnapshot, stable: SideSnapshot | undefined, policy: CanaryPolicy): 'success_rate' | 'latency' | undefined {
  if (canary.successRate < (stable?.successRate ?? 1) - policy.maxSuccessRateDrop) return 'success_rate';
  const ours = canary.latencyMs;
  const theirs = stable?.latencyMs;
  if (ours === undefined || theirs === undefined) return undefined;
  return ours > Math.max(theirs * policy.maxLatencyRatio, theirs + policy.latencyFloorMs) ? 'latency' : undefined;
}

function hold(state: CanaryState, reason: CanaryReason, canary: SideSnapshot, stable: SideSnapshot | undefined): CanaryOutcome {
  return { state, decision: { action: 'hold', from: state.weight, to: state.weight, reason, canary, stable }, resetObservations: false };
}

/** A transition that starts a new step or phase: its clock restarts and its observations are cleared. */
function change(
  state: CanaryState,
  action: CanaryAction,
  reason: CanaryReason,
  fields: Partial<Pick<CanaryState, 'phase' | 'stepIndex' | 'weight'>>,
  now: number,
  canary: SideSnapshot,
  stable: SideSnapshot | undefined,
): CanaryOutcome {
  const next: CanaryState = { ...state, ...fields, stepStartedAt: now, lastReason: reason };
  return { state: next, decision: { action, from: state.weight, to: next.weight, reason, canary, stable }, resetObservations: true };
}
