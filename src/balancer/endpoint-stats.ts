/**
 * The observation half of the feedback loop for one endpoint: a time-decayed
 * latency average, a sliding window of outcomes, and the run of consecutive
 * failures. Time is always passed in, never read, so tests drive it exactly.
 */
import { SlidingCounters } from '../util/sliding-window.ts';
import { isEndpointFailure, OUTCOMES, type Outcome } from '../protocol/outcome.ts';

export interface EndpointStatsOptions {
  /** Decay time of the latency average: a sample this old weighs 1/e. */
  readonly decayMs: number;
  /** Width of the outcome window, split into `buckets` slots. */
  readonly windowMs: number;
  readonly buckets: number;
}

const SUCCESSES = 0;
const FAILURES = 1;

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
  private ewma = 0;
  private ewmaAt = Number.NaN;
  /** Series 0: successes, 1: failures. */
  private readonly window: SlidingCounters;
  private consecutive = 0;
  private last: Outcome | undefined;
  private readonly totalsByOutcome: Record<Outcome, number>;

  constructor(options: EndpointStatsOptions = DEFAULT_STATS_OPTIONS) {
    this.options = options;
    this.window = new SlidingCounters(options.windowMs, options.buckets, 2);
    this.totalsByOutcome = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
  }

  /** Records one finished attempt that took `latencyMs`, observed at `now`. */
  record(outcome: Outcome, latencyMs: number, now: number): void {
    this.totalsByOutcome[outcome]++;
    this.last = outcome;
    if (outcome === 'client_abort') return;
    if (isEndpointFailure(outcome)) {
      this.window.add(FAILURES, now);
      this.consecutive++;
    } else {
      this.window.add(SUCCESSES, now);
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

  /** Attempts by outcome since the endpoint appeared (read at scrape; not a copy). */
  get totals(): Readonly<Record<Outcome, number>> {
    return this.totalsByOutcome;
  }

  snapshot(now: number): EndpointStatsSnapshot {
    const ok = this.window.sum(SUCCESSES, now);
    const failed = this.window.sum(FAILURES, now);
    const requests = ok + failed;
    return {
      ewmaLatencyMs: Number.isNaN(this.ewmaAt) ? undefined : this.ewma,
      windowRequests: requests,
      windowSuccessRate: requests === 0 ? undefined : ok / requests,
      consecutiveFailures: this.consecutive,
      total: { ...this.totalsByOutcome },
      lastOutcome: this.last,
    };
  }
}
