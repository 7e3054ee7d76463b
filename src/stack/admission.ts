/**
 * Admission control (backpressure): a request runs when the service is under
 * its adaptive concurrency limit; otherwise it waits in a bounded FIFO queue
 * for a bounded time, then gets a fast 503 overloaded with Retry-After,
 * instead of piling up behind a saturated backend until everyone times out.
 * The wait is bounded by the service's unloaded latency (so admitted requests
 * keep their latency), by the configured maximum, and by the deadline.
 */
import type { Clock } from '../clock.ts';
import { MeshError } from '../errors.ts';
import type { GradientLimiter, LimitChange } from '../feedback/concurrency.ts';
import type { Exchange } from './exchange.ts';
import type { Handler, Layer } from './layer.ts';

export interface QueueConfig {
  readonly size: number;
  /** Upper bound of the wait; the usual latency (×2) bounds it further once known. */
  readonly maxWaitMs: number;
}

export interface AdmissionEvents {
  limitChanged(change: LimitChange): void;
  shed(reason: 'queue_full' | 'queue_timeout', limit: number, queued: number): void;
}

interface Waiter {
  admit: () => void;
  timer: NodeJS.Timeout | undefined;
}

export class Admission {
  private readonly limiter: GradientLimiter;
  private readonly queue: QueueConfig;
  private readonly clock: Clock;
  private readonly events: AdmissionEvents;
  private readonly waiting: Waiter[] = [];
  inFlight = 0;

  constructor(limiter: GradientLimiter, queue: QueueConfig, clock: Clock, events: AdmissionEvents) {
    this.limiter = limiter;
    this.queue = queue;
    this.clock = clock;
    this.events = events;
  }

  get limit(): number {
    return this.limiter.limit;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves when the request may run; rejects with `overloaded` when it is shed. */
  acquire(deadline: number): Promise<void> | undefined {
    if (this.inFlight < this.limiter.limit && this.waiting.length === 0) {
      this.inFlight++;
      return undefined;
    }
    if (this.waiting.length >= this.queue.size) {
      this.events.shed('queue_full', this.limiter.limit, this.waiting.length);
      return Promise.reject(overloaded(this.limiter.limit));
    }
    const baseline = this.limiter.baselineMs;
    // Half an unloaded service time: an admitted request never waits longer than a fraction of its own run.
    const wait = Math.max(
      1,
      Math.min(this.queue.maxWaitMs, Number.isNaN(baseline) ? this.queue.maxWaitMs : Math.max(5, baseline / 2), deadline - this.clock()),
    );
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { admit: resolve, timer: undefined };
      waiter.timer = setTimeout(() => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        this.events.shed('queue_timeout', this.limiter.limit, this.waiting.length);
        reject(overloaded(this.limiter.limit));
      }, wait);
      this.waiting.push(waiter);
    });
  }

  /** Ends a request; a successful one's latency feeds the limiter. */
  release(latencyMs: number, succeeded: boolean): void {
    const running = this.inFlight;
    this.inFlight--;
    if (succeeded) {
      const change = this.limiter.sample(latencyMs, running, this.clock());
      if (change !== undefined) this.events.limitChanged(change);
    }
    while (this.waiting.length > 0 && this.inFlight < this.limiter.limit) {
      const next = this.waiting.shift()!;
      clearTimeout(next.timer);
      this.inFlight++;
      next.admit();
    }
  }
}

function overloaded(limit: number): MeshError {
  return new MeshError('overloaded', `the service is at its concurrency limit (${limit}) and the queue could not take the request`, { retryAfterSeconds: 1 });
}

/** The stack layer around Admission: acquire before, release after, with the exchange's outcome. */
export function admissionLayer(admission: () => Admission | undefined, clock: Clock): Layer {
  const admitted = async (gate: Admission, ex: Exchange, next: Handler): Promise<void> => {
    const waiting = gate.acquire(ex.deadline);
    if (waiting !== undefined) await waiting;
    const started = clock();
    let ok = false;
    try {
      await next(ex);
      ok = ex.attempt.outcome === 'success';
    } finally {
      gate.release(clock() - started, ok);
    }
  };
  // Without adaptive concurrency (the default) the layer adds no promise of its own.
  return (next) => (ex) => {
    const gate = admission();
    return gate === undefined ? next(ex) : admitted(gate, ex, next);
  };
}
