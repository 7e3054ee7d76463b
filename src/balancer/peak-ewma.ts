/**
 * The cost model of P2C + peak EWMA (Finagle's PeakEwma, linkerd2-proxy's
 * `PeakEwma`): a latency estimate that jumps up at once to a slower sample
 * ("peak") and decays towards faster ones with time constant `decay`, times
 * the endpoint's requests in flight + 1. Unlike both, failures count too, so
 * a host answering fast errors does not attract traffic (linkerd/linkerd2#11669):
 * the cost is multiplied by (1 + failurePenalty × failure rate), and P2C
 * prefers the clearly healthier of its two candidates before comparing costs
 * (see p2c.ts). The failure rate is a per-response average that, like the
 * latency, decays towards zero while an endpoint gets no traffic, so that a
 * shunned endpoint is probed again eventually. Time is always passed in.
 */
import { DEFAULTS } from '../config/defaults.ts';

export interface PeakEwmaOptions {
  /** Time constant of the decay: after `decayMs` without samples an estimate weighs 1/e. */
  readonly decayMs: number;
  /** Latency assumed for an endpoint never measured, so new endpoints are probed, not flooded. */
  readonly defaultRttMs: number;
  /** Cost multiplier per unit of failure rate: at 10, a host failing 5 % costs 1.5× an equal healthy one. */
  readonly failurePenalty: number;
  /** Weight of one response in the failure-rate average (0.05 ≈ the last 20 responses). */
  readonly failureAlpha: number;
}

export const DEFAULT_PEAK_EWMA: PeakEwmaOptions = {
  decayMs: DEFAULTS.services.balancer.decay,
  defaultRttMs: DEFAULTS.services.balancer.defaultRtt,
  failurePenalty: DEFAULTS.services.balancer.failurePenalty,
  failureAlpha: 0.05,
};

export class PeakEwma {
  private options: PeakEwmaOptions;
  private rttMs: number;
  private failureRate = 0;
  private stamp: number;
  /** The default estimate is a prior for an unmeasured endpoint: the first sample replaces it. */
  private measured = false;

  constructor(options: PeakEwmaOptions, now: number) {
    this.options = options;
    this.rttMs = options.defaultRttMs;
    this.stamp = now;
  }

  /**
   * Forgets the history: the endpoint is judged afresh (after it returns from ejection), starting
   * from `rttMs` (its peers' typical latency) so that it competes evenly and slow start alone
   * decides how fast its share grows.
   */
  reset(now: number, rttMs = this.options.defaultRttMs): void {
    this.rttMs = rttMs;
    this.failureRate = 0;
    this.measured = false;
    this.stamp = now;
  }

  setOptions(options: PeakEwmaOptions): void {
    this.options = options;
  }

  /** Folds in one finished request. */
  observe(rttMs: number, failed: boolean, now: number): void {
    const w = this.decayWeight(now);
    this.rttMs = !this.measured || rttMs > this.rttMs ? rttMs : this.rttMs * w + rttMs * (1 - w);
    this.measured = true;
    const alpha = this.options.failureAlpha;
    this.failureRate = this.failureRate * w * (1 - alpha) + (failed ? alpha : 0);
    this.stamp = now;
  }

  /** The latency estimate at `now`, decayed for the time since the last sample. */
  rttAt(now: number): number {
    return this.rttMs * this.decayWeight(now);
  }

  failureRateAt(now: number): number {
    return this.failureRate * this.decayWeight(now);
  }

  /** Expected cost of sending one more request: lower is better. */
  cost(inFlight: number, now: number): number {
    const w = this.decayWeight(now);
    return this.rttMs * w * (inFlight + 1) * (1 + this.options.failurePenalty * this.failureRate * w);
  }

  private decayWeight(now: number): number {
    const elapsed = now - this.stamp;
    return elapsed <= 0 ? 1 : Math.exp(-elapsed / this.options.decayMs);
  }
}
