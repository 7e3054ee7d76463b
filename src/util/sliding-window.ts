/**
 * Counters over a sliding time window, kept as a ring of buckets: adding and
 * summing are O(buckets) with no allocation, and time is always passed in.
 */
export class SlidingCounters {
  private readonly buckets: number;
  private readonly bucketMs: number;
  /** One Float64Array per series, `buckets` long. */
  private readonly series: Float64Array[];
  private current = 0;
  private currentStart = Number.NEGATIVE_INFINITY;

  constructor(windowMs: number, buckets: number, seriesCount: number) {
    this.buckets = buckets;
    this.bucketMs = windowMs / buckets;
    this.series = Array.from({ length: seriesCount }, () => new Float64Array(buckets));
  }

  add(series: number, now: number, amount = 1): void {
    this.advance(now);
    this.series[series]![this.current]! += amount;
  }

  sum(series: number, now: number): number {
    this.advance(now);
    const values = this.series[series]!;
    let total = 0;
    for (let i = 0; i < this.buckets; i++) total += values[i]!;
    return total;
  }

  /** Moves the ring so that the current bucket covers `now`, clearing buckets that left the window. */
  private advance(now: number): void {
    if (now < this.currentStart + this.bucketMs) return;
    const steps = Number.isFinite(this.currentStart) ? Math.floor((now - this.currentStart) / this.bucketMs) : this.buckets;
    const clear = Math.min(steps, this.buckets);
    for (let i = 1; i <= clear; i++) {
      const index = (this.current + i) % this.buckets;
      for (const values of this.series) values[index] = 0;
    }
    this.current = (this.current + clear) % this.buckets;
    this.currentStart = Number.isFinite(this.currentStart) ? this.currentStart + steps * this.bucketMs : now;
  }
}
