/**
 * Adaptive concurrency limit for one service, gradient-style (Netflix
 * concurrency-limits' Gradient2, Envoy's adaptive concurrency filter), as a
 * pure state machine: samples of request latency and in-flight count in,
 * limit changes out, time passed in.
 *
 * Every window the average latency (short) is compared with the baseline,
 * the lowest window average seen over the last `baselineMs` (30 s):
 *   gradient = clamp(tolerance × baseline / short, 0.5, 1)
 *   limit    = (1 − s)·limit + s·(limit × gradient + √limit)
 * Latency holding → gradient 1 → the limit grows by ~s·√limit per window
 * (s = 0.2) while latency stays within half the tolerance, and holds between
 * that and the tolerance; latency climbing past it → it shrinks, up to a
 * quarter per window (s = 0.5 when shrinking, so overload is met within
 * about two seconds).
 *
 * The traps of the anchors, avoided:
 * - No minimum-RTT probing (Envoy pins concurrency low to re-measure it,
 *   which itself sheds bursts: envoyproxy/envoy#38338): the baseline is the
 *   minimum of what ordinary traffic measured, so nothing is forced down.
 * - Recovery after a sustained degradation (envoyproxy/envoy#46532): the
 *   baseline is a sliding-window minimum, so 30 s into a lasting slowdown the
 *   old fast minimum has expired, the slower latency becomes the baseline,
 *   the gradient returns to 1 and the limit grows back.
 * - Unlike Gradient2's exponential long average, the baseline does not creep
 *   up during an overload (which would let the limit, and the queueing, grow
 *   back while the backend is still saturated).
 * - Only a limit that is actually used grows: a window whose peak in-flight
 *   stayed under half the limit leaves it unchanged (no unbounded growth
 *   while idle, then a burst against a stale huge limit).
 */
import { DEFAULTS } from '../config/defaults.ts';

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
  /** Span of the sliding minimum that is the latency baseline. */
  readonly baselineMs: number;
}

export const DEFAULT_CONCURRENCY: ConcurrencyConfig = {
  initialLimit: DEFAULTS.services.concurrency.initialLimit,
  minLimit: DEFAULTS.services.concurrency.minLimit,
  maxLimit: DEFAULTS.services.concurrency.maxLimit,
  tolerance: DEFAULTS.services.concurrency.tolerance,
  smoothing: 0.2,
  shrinkSmoothing: 0.5,
  windowMs: DEFAULTS.services.concurrency.window,
  minSamples: 10,
  baselineMs: 30_000,
};

export interface LimitChange {
  type: 'limit_change';
  from: number;
  to: number;
  shortRttMs: number;
  baselineRttMs: number;
  gradient: number;
  maxInFlight: number;
}

export class GradientLimiter {
  private readonly config: ConcurrencyConfig;
  private estimate: number;
  /** Window averages of the last `baselineMs`, oldest first. */
  private history: { at: number; rtt: number }[] = [];
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

  /** The service's unloaded latency (the baseline), NaN until measured. */
  get baselineMs(): number {
    let min = Number.NaN;
    for (const h of this.history) if (!(h.rtt >= min)) min = h.rtt;
    return min;
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
    const first = this.history.length === 0;
    this.history.push({ at: now, rtt: shortRtt });
    while (this.history.length > 0 && this.history[0]!.at < now - c.baselineMs) this.history.shift();
    if (first) return undefined;
    const baseline = this.baselineMs;
    const gradient = Math.max(0.5, Math.min(1, (c.tolerance * baseline) / shortRtt));
    // An unused limit neither grows nor is judged by this window's latency.
    if (gradient >= 1 && peak < this.estimate / 2) return undefined;
    // Hysteresis: grow only while latency is well inside the tolerance, hold near its edge, so
    // the limit settles just under saturation instead of oscillating across it.
    if (gradient >= 1 && shortRtt > baseline * (1 + (c.tolerance - 1) / 2)) return undefined;
    const target = this.estimate * gradient + (gradient >= 1 ? Math.sqrt(this.estimate) : 0);
    const s = target < this.estimate ? c.shrinkSmoothing : c.smoothing;
    const next = Math.min(c.maxLimit, Math.max(c.minLimit, this.estimate * (1 - s) + target * s));
    const from = this.limit;
    this.estimate = next;
    if (this.limit === from) return undefined;
    return { type: 'limit_change', from, to: this.limit, shortRttMs: shortRtt, baselineRttMs: baseline, gradient, maxInFlight: peak };
  }
}
