/**
 * What this host saw of one canary step, per side (stable and canary): request
 * and failure counts and a latency histogram. The data path records every
 * request, so recording is a few arithmetic operations and no allocation; the
 * histogram has fixed log-scale buckets, so memory stays the same whatever the
 * traffic, and a percentile is exact to within one bucket (about 10 %).
 */

/** Which version served a request. */
export type CanarySide = 'stable' | 'canary';

/** One side's numbers over the step so far. */
export interface SideSnapshot {
  readonly requests: number;
  readonly failures: number;
  /** Successes over requests; 1 when there were no requests. */
  readonly successRate: number;
  /** The requested latency percentile (upper bound of its bucket), undefined when there were no requests. */
  readonly latencyMs: number | undefined;
}

export interface StepSnapshot {
  readonly stable: SideSnapshot;
  readonly canary: SideSnapshot;
}

const SMALLEST_BOUND_MS = 0.1;
const GROWTH = 1.1;
const LARGEST_MS = 120_000;
const BUCKETS = Math.ceil(Math.log(LARGEST_MS / SMALLEST_BOUND_MS) / Math.log(GROWTH)) + 1;

/** Upper bound of each bucket: 0.1 ms × 1.1^i, the last one (≈ 127 s) also holding anything slower. */
const BOUNDS = Float64Array.from({ length: BUCKETS }, (_, i) => SMALLEST_BOUND_MS * GROWTH ** i);

function bucketOf(latencyMs: number): number {
  // NaN and negative latencies (a clock step) land in the first bucket rather than corrupt an index.
  if (!(latencyMs > SMALLEST_BOUND_MS)) return 0;
  let i = Math.min(BUCKETS - 1, Math.ceil(Math.log(latencyMs / SMALLEST_BOUND_MS) / Math.log(GROWTH)));
  // The logarithm may round across a bound; the table is the truth.
  if (i > 0 && latencyMs <= BOUNDS[i - 1]!) i--;
  else if (i < BUCKETS - 1 && latencyMs > BOUNDS[i]!) i++;
  return i;
}

class SideCounters {
  requests = 0;
  failures = 0;
  readonly buckets = new Uint32Array(BUCKETS);

  snapshot(percentile: number): SideSnapshot {
    const { requests, failures } = this;
    return { requests, failures, successRate: requests === 0 ? 1 : (requests - failures) / requests, latencyMs: this.latency(percentile) };
  }

  private latency(percentile: number): number | undefined {
    if (this.requests === 0) return undefined;
    // The rank of the percentile sample; the small epsilon keeps 0.9 × 1000 from becoming rank 901.
    const rank = Math.max(1, Math.ceil(Math.min(1, percentile) * this.requests - 1e-9));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) return BOUNDS[i]!;
    }
    return BOUNDS[BUCKETS - 1]!;
  }
}

/**
 * Counters of one canary step. Failed requests count in the latency too: a canary that times
 * out is slow, and one that fails fast is caught by its success rate.
 */
export class StepObservations {
  private readonly stable = new SideCounters();
  private readonly canary = new SideCounters();

  /** Counts one finished request served by `side`. */
  record(side: CanarySide, success: boolean, latencyMs: number): void {
    const counters = side === 'canary' ? this.canary : this.stable;
    counters.requests++;
    if (!success) counters.failures++;
    counters.buckets[bucketOf(latencyMs)]!++;
  }

  /** Both sides' numbers, with latency at `percentile` (in (0, 1]). */
  snapshot(percentile: number): StepSnapshot {
    return { stable: this.stable.snapshot(percentile), canary: this.canary.snapshot(percentile) };
  }

  /** Forgets everything: a new step is judged on its own traffic only. */
  reset(): void {
    for (const counters of [this.stable, this.canary]) {
      counters.requests = 0;
      counters.failures = 0;
      counters.buckets.fill(0);
    }
  }
}
