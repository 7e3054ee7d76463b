/**
 * Adaptive concurrency limit for one service, gradient-style (Netflix
 * concurrency-limits' Gradient2, Envoy's adaptive concurrency filter), as a
 * pure state machine: samples of request latency and in-flight count in,
 * limit changes out, time passed in.
 *
 * Every window the average latency (short) is compared with a slow
 * exponential average of past windows (long):
 *   gradient = clamp(tolerance × long / short, 0.5, 1)
 *   limit    = (1 − s)·limit + s·(limit × gradient + √limit)
 * Latency holding → gradient 1 → the limit grows by ~s·√limit per window
 * (s = 0.2); latency climbing → it shrinks, up to a quarter per window
 * (s = 0.5 when shrinking, so overload is met within about two seconds).
 *
 * The traps of the anchors, avoided:
 * - No minimum-RTT probing (Envoy pins concurrency low to re-measure it,
 *   which itself sheds bursts: envoyproxy/envoy#38338); the baseline is the
 *   long average, which needs no probe.
 * - Recovery after a sustained degradation (envoyproxy/envoy#46532): the long
 *   average follows the new latency, so the gradient returns to 1 and the
 *   limit grows back; when latency then falls, long ≫ short and the long
 *   average is pulled down faster, so it cannot stay inflated.
 * - Only a limit that is actually used grows: a window whose peak in-flight
 *   stayed under half the limit leaves it unchanged (no unbounded growth
 *   while idle, then a burst against a stale huge limit).
 */

export interface ConcurrencyConfig {
  readonly initialLimit: number;
  readonly minLimit: number;
  readonly maxLimit: number;
  /** How much slower than the long average a window may be before the limit shrinks. */
  readonly tolerance: number;
  /** Weight of each window's new limit (s above) when it grows. */
  readonly smoothing: number;
  /** The same when it shrinks: larger, so that overload is met within a few windows. */
  readonly shrinkSmoothing: number;
  readonly windowMs: number;
  /** Samples a window needs before it counts. */
  readonly minSamples: number;
  /** Weight of each window in the long average. */
  readonly longAlpha: number;
}

export const DEFAULT_CONCURRENCY: ConcurrencyConfig = {
  initialLimit: 100,
  minLimit: 8,
  maxLimit: 2_000,
  tolerance: 1.5,
  smoothing: 0.2,
  shrinkSmoothing: 0.5,
  windowMs: 250,
  minSamples: 10,
  longAlpha: 0.05,
};

export interface LimitChange {
  type: 'limit_change';
  from: number;
  to: number;
  shortRttMs: number;
  longRttMs: number;
  gradient: number;
  maxInFlight: number;
}

export class GradientLimiter {
  private readonly config: ConcurrencyConfig;
  private estimate: number;
  private longRtt = Number.NaN;
  private windowStart = Number.NaN;
  private sum = 0;
  private count = 0;
  private peakInFlight = 0;

  constructor(config: ConcurrencyConfig) {
    this.config = config;
    this.estimate = config.initialLimit;
  }

  /** The current limit (whole requests). */
  get limit(): number {
    return Math.floor(this.estimate);
  }

  /** The service's usual latency (the long average), NaN until measured. */
  get baselineMs(): number {
    return this.longRtt;
  }

  /** One successful request that took `rttMs` with `inFlight` requests running; may close a window. */
  sample(rttMs: number, inFlight: number, now: number): LimitChange | undefined {
    if (Number.isNaN(this.windowStart)) this.windowStart = now;
    this.sum += rttMs;
    this.count++;
    if (inFlight > this.peakInFlight) this.peakInFlight = inFlight;
    if (now - this.windowStart < this.config.windowMs || this.count < this.config.minSamples) return undefined;
    return this.closeWindow(now);
  }

  private closeWindow(now: number): LimitChange | undefined {
    const c = this.config;
    const shortRtt = this.sum / this.count;
    const peak = this.peakInFlight;
    this.windowStart = now;
    this.sum = 0;
    this.count = 0;
    this.peakInFlight = 0;
    if (Number.isNaN(this.longRtt)) {
      this.longRtt = shortRtt;
      return undefined;
    }
    this.longRtt = this.longRtt * (1 - c.longAlpha) + shortRtt * c.longAlpha;
    // Latency fell well below the baseline (a degradation ended): let the baseline catch up fast.
    if (this.longRtt / shortRtt > 2) this.longRtt *= 0.95;
    const gradient = Math.max(0.5, Math.min(1, (c.tolerance * this.longRtt) / shortRtt));
    // An unused limit neither grows nor is judged by this window's latency.
    if (gradient >= 1 && peak < this.estimate / 2) return undefined;
    const target = this.estimate * gradient + Math.sqrt(this.estimate);
    const s = target < this.estimate ? c.shrinkSmoothing : c.smoothing;
    const next = Math.min(c.maxLimit, Math.max(c.minLimit, this.estimate * (1 - s) + target * s));
    const from = this.limit;
    this.estimate = next;
    if (this.limit === from) return undefined;
    return { type: 'limit_change', from, to: this.limit, shortRttMs: shortRtt, longRttMs: this.longRtt, gradient, maxInFlight: peak };
  }
}
