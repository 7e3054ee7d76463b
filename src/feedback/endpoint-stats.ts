/**
 * The observation half of the feedback loop for one endpoint: a time-decayed
 * latency average, a sliding window of outcomes, and the run of consecutive
 * failures. Time is always passed in, never read, so tests drive it exactly.
 */
import { isEndpointFailure, OUTCOMES, type Outcome } from './outcome.ts';

export interface EndpointStatsOptions {
  /** Decay time of the latency average: a sample this old weighs 1/e. */
  readonly decayMs: number;
  /** Width of the outcome window, split into `buckets` slots. */
  readonly windowMs: number;
  readonly buckets: number;
}

export const DEFAULT_STATS_OPTIONS: EndpointStatsOptions = { decayMs: 10_000, windowMs: 10_000, buckets: 10 };

export interface EndpointStatsSnapshot {
  ewmaLatencyMs: number | undefined;
  windowRequests: number;
  windowSuccessRate: number | undefined;
  consecutiveFailures: number;
  total: Record<Outcome, number>;
  lastOutcome: Outcome | undefined;
}

export class EndpointStats {
  private readonly options: EndpointStatsOptions;
  private readonly bucketMs: number;
  private ewma = 0;
  private ewmaAt = Number.NaN;
  private readonly successes: Float64Array;
  private readonly failures: Float64Array;
  private bucketStart = Number.NEGATIVE_INFINITY;
  private bucketIndex = 0;
  private consecutive = 0;
  private last: Outcome | undefined;
  private readonly totals: Record<Outcome, number>;

  constructor(options: EndpointStatsOptions = DEFAULT_STATS_OPTIONS) {
    this.options = options;
    this.bucketMs = options.windowMs / options.buckets;
    this.successes = new Float64Array(options.buckets);
    this.failures = new Float64Array(options.buckets);
    this.totals = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
  }

  /** Records one finished attempt that took `latencyMs`, observed at `now`. */
  record(outcome: Outcome, latencyMs: number, now: number): void {
    this.totals[outcome]++;
    this.last = outcome;
    if (outcome === 'client_abort') return;
    this.advance(now);
    if (isEndpointFailure(outcome)) {
      this.failures[this.bucketIndex]!++;
      this.consecutive++;
    } else {
      this.successes[this.bucketIndex]!++;
      this.consecutive = 0;
    }
    if (Number.isNaN(this.ewmaAt)) {
      this.ewma = latencyMs;
    } else {
      const weight = Math.exp(-Math.max(0, now - this.ewmaAt) / this.options.decayMs);
      this.ewma = this.ewma * weight + latencyMs * (1 - weight);
    }
    this.ewmaAt = now;
  }

  snapshot(now: number): EndpointStatsSnapshot {
    this.advance(now);
    let ok = 0;
    let failed = 0;
    for (let i = 0; i < this.options.buckets; i++) {
      ok += this.successes[i]!;
      failed += this.failures[i]!;
    }
    const requests = ok + failed;
    return {
      ewmaLatencyMs: Number.isNaN(this.ewmaAt) ? undefined : this.ewma,
      windowRequests: requests,
      windowSuccessRate: requests === 0 ? undefined : ok / requests,
      consecutiveFailures: this.consecutive,
      total: { ...this.totals },
      lastOutcome: this.last,
    };
  }

  /** Moves the window so that the current bucket covers `now`, clearing stale buckets. */
  private advance(now: number): void {
    if (now < this.bucketStart + this.bucketMs) return;
    const steps = Number.isFinite(this.bucketStart) ? Math.floor((now - this.bucketStart) / this.bucketMs) : this.options.buckets;
    const clear = Math.min(steps, this.options.buckets);
    for (let i = 1; i <= clear; i++) {
      const idx = (this.bucketIndex + i) % this.options.buckets;
      this.successes[idx] = 0;
      this.failures[idx] = 0;
    }
    this.bucketIndex = (this.bucketIndex + clear) % this.options.buckets;
    this.bucketStart = Number.isFinite(this.bucketStart) ? this.bucketStart + steps * this.bucketMs : now;
  }
}
