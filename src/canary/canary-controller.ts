/**
 * Runs one service's canary: counts this host's attempts to the stable and
 * canary subsets, judges them every second with the pure state machine
 * (./canary-state.ts), applies the weight it decides, and explains every
 * change as a log event (with the numbers that decided it) and a metric.
 * Only this module touches the timer.
 */
import type { Endpoint } from '../balancer/endpoint.ts';
import type { Clock } from '../clock.ts';
import type { CanaryConfig } from '../config/types.ts';
import type { Logger } from '../log.ts';
import { isEndpointFailure, type Outcome } from '../protocol/outcome.ts';
import { labelsMatch } from '../traffic/backends.ts';
import {
  commandCanary,
  canaryProgress,
  initialCanaryState,
  judgeCanary,
  resumeCanaryState,
  type CanaryCommand,
  type CanaryDecision,
  type CanaryOutcome,
  type CanaryState,
} from './canary-state.ts';
import { StepObservations, type StepSnapshot } from './step-observations.ts';
import type { CanaryStore } from './canary-store.ts';

export interface CanaryRecorder {
  /** The canary's share of traffic now (percent) and its phase. */
  canaryWeight(service: string, weight: number, phase: string): void;
  canaryDecision(service: string, action: string, reason: string): void;
}

/** What a service needs of its canary, whichever process decides it. */
export interface Canary {
  readonly config: CanaryConfig;
  readonly weight: number;
  start(): void;
  stop(): void;
  observe(endpoint: Endpoint, outcome: Outcome, latencyMs: number): void;
  view(): CanaryView | { phase: string; weight: number; decidedBy: 'supervisor' };
}

export interface CanaryView {
  phase: string;
  weight: number;
  step: number;
  steps: readonly number[];
  stepAgeSeconds: number;
  lastReason: string;
  stable: Readonly<Record<string, string>>;
  canary: Readonly<Record<string, string>>;
  observed: StepSnapshot;
  history: CanaryDecision[];
}

const TICK_MS = 1_000;
/** Decisions kept for /debug/state. */
const HISTORY = 20;

export class CanaryController implements Canary {
  private readonly service: string;
  readonly config: CanaryConfig;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly recorder: CanaryRecorder;
  private state: CanaryState;
  private readonly observations = new StepObservations();
  private readonly history: CanaryDecision[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastHold: string | undefined;

  private readonly moved: () => void;
  private readonly store: CanaryStore | undefined;
  /** The settings this rollout belongs to, as saved with its progress. */
  private readonly definition: string;

  /**
   * `moved` is told after every change of weight or phase (the supervisor passes it on to its
   * workers); `store` keeps the progress across restarts, and gives back what it kept for this
   * very definition.
   */
  constructor(
    service: string,
    config: CanaryConfig,
    deps: { clock: Clock; log: Logger; recorder: CanaryRecorder; moved?: () => void; store?: CanaryStore | undefined },
  ) {
    this.moved = deps.moved ?? (() => {});
    this.service = service;
    this.config = config;
    this.clock = deps.clock;
    this.log = deps.log;
    this.recorder = deps.recorder;
    this.store = deps.store;
    this.definition = JSON.stringify(config);
    const saved = this.store?.saved(service, this.definition);
    const resumed = saved === undefined ? undefined : resumeCanaryState(config, saved, this.clock());
    this.state = resumed ?? initialCanaryState(config, this.clock());
    this.recorder.canaryWeight(service, this.state.weight, this.state.phase);
    const described = { event: 'canary', service, weight: this.state.weight, steps: config.steps, stable: config.stable, canary: config.canary };
    if (resumed !== undefined) {
      this.log.info(
        { ...described, action: 'restored', phase: resumed.phase, step: resumed.stepIndex, reason: resumed.lastReason },
        `canary of ${service} taken up where it was before the restart: ${resumed.weight}% (${resumed.phase})`,
      );
    } else {
      if (saved !== undefined)
        this.log.warn({ event: 'canary', service, saved }, `saved state of the canary of ${service} does not fit its steps; it starts over`);
      this.log.info({ ...described, action: 'start' }, `canary of ${service} starts at ${this.state.weight}%`);
    }
    this.store?.save(service, this.definition, canaryProgress(this.state));
  }

  /** Percent of the default backend's traffic that goes to the canary subset now. */
  get weight(): number {
    return this.state.weight;
  }

  get phase(): string {
    return this.state.phase;
  }

  start(): void {
    this.timer ??= setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One attempt's result, counted for the side its endpoint belongs to (neither: not counted). */
  observe(endpoint: Endpoint, outcome: Outcome, latencyMs: number): void {
    if (outcome === 'client_abort') return;
    const side = labelsMatch(endpoint, this.config.canary) ? 'canary' : labelsMatch(endpoint, this.config.stable) ? 'stable' : undefined;
    if (side !== undefined) this.observations.record(side, !isEndpointFailure(outcome), latencyMs);
  }

  /** Judges the step now (the timer calls this every second). */
  tick(): void {
    const snapshot = this.observations.snapshot(this.config.latencyPercentile);
    this.apply(judgeCanary(this.state, snapshot, this.config, this.clock()));
  }

  /** An operator's command through the admin API. */
  command(command: CanaryCommand): CanaryDecision {
    const snapshot = this.observations.snapshot(this.config.latencyPercentile);
    const outcome = commandCanary(this.state, command, this.config, this.clock(), snapshot);
    this.apply(outcome);
    return outcome.decision;
  }

  view(): CanaryView {
    return {
      phase: this.state.phase,
      weight: this.state.weight,
      step: this.state.stepIndex,
      steps: this.config.steps,
      stepAgeSeconds: Math.round((this.clock() - this.state.stepStartedAt) / 100) / 10,
      lastReason: this.state.lastReason,
      stable: this.config.stable,
      canary: this.config.canary,
      observed: this.observations.snapshot(this.config.latencyPercentile),
      history: [...this.history],
    };
  }

  private apply({ state, decision, resetObservations }: CanaryOutcome): void {
    this.state = state;
    if (resetObservations) this.observations.reset();
    if (decision.action === 'hold') {
      // Holds repeat every second: logged once per reason, at debug.
      if (decision.reason !== this.lastHold)
        this.log.debug({ event: 'canary', service: this.service, ...decision }, `canary of ${this.service} holds: ${decision.reason}`);
      this.lastHold = decision.reason;
      return;
    }
    this.lastHold = undefined;
    this.history.push(decision);
    if (this.history.length > HISTORY) this.history.shift();
    this.recorder.canaryDecision(this.service, decision.action, decision.reason);
    this.recorder.canaryWeight(this.service, state.weight, state.phase);
    this.store?.save(this.service, this.definition, canaryProgress(state));
    this.moved();
    const fields = { event: 'canary', service: this.service, ...decision, phase: state.phase };
    const text = `canary of ${this.service}: ${decision.action} ${decision.from}% → ${decision.to}% (${decision.reason})`;
    if (decision.action === 'rollback') this.log.warn(fields, text);
    else this.log.info(fields, text);
  }
}

/**
 * A worker's canary: the supervisor judges on every worker's samples and sends the weight; until
 * the first word, the first step's weight (what the supervisor starts at too).
 */
export class FollowedCanary implements Canary {
  readonly config: CanaryConfig;
  weight: number;
  phase = 'progressing';

  constructor(config: CanaryConfig) {
    this.config = config;
    this.weight = config.steps[0] ?? 0;
  }

  start(): void {}
  stop(): void {}
  observe(): void {}

  follow(weight: number, phase: string): void {
    this.weight = weight;
    this.phase = phase;
  }

  view(): { phase: string; weight: number; decidedBy: 'supervisor' } {
    return { phase: this.phase, weight: this.weight, decidedBy: 'supervisor' };
  }
}
