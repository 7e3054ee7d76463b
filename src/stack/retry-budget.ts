/**
 * A retry budget (Linkerd's and Finagle's): retries may add at most `ratio`
 * of the live request rate, plus a floor of `minPerSecond` so that a quiet
 * service can still retry. Both are measured over a sliding window, so in an
 * outage retries can never multiply load by more than 1 + ratio (plus the
 * floor). Pure: time is passed in.
 */
import { SlidingCounters } from '../util/sliding-window.ts';

export interface RetryBudgetOptions {
  readonly ratio: number;
  readonly minPerSecond: number;
  readonly windowMs: number;
}

export const DEFAULT_RETRY_BUDGET: RetryBudgetOptions = { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 };

const REQUESTS = 0;
const RETRIES = 1;

export class RetryBudget {
  private readonly options: RetryBudgetOptions;
  private readonly counters: SlidingCounters;

  constructor(options: RetryBudgetOptions) {
    this.options = options;
    this.counters = new SlidingCounters(options.windowMs, 10, 2);
  }

  /** Counts one original (not retried) request. */
  recordRequest(now: number): void {
    this.counters.add(REQUESTS, now);
  }

  /** Takes one retry from the budget; false when the budget is spent. */
  tryWithdraw(now: number): boolean {
    if (this.counters.sum(RETRIES, now) + 1 > this.allowance(now)) return false;
    this.counters.add(RETRIES, now);
    return true;
  }

  /** Retries the window allows at `now`. */
  allowance(now: number): number {
    return this.options.ratio * this.counters.sum(REQUESTS, now) + (this.options.minPerSecond * this.options.windowMs) / 1000;
  }

  snapshot(now: number): { requests: number; retries: number; allowance: number } {
    return { requests: this.counters.sum(REQUESTS, now), retries: this.counters.sum(RETRIES, now), allowance: this.allowance(now) };
  }
}
