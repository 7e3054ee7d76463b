/**
 * A worker's side of the feedback loop when several workers share the host's
 * traffic: every finished attempt is reported to the supervisor, which alone
 * decides (it sees all workers' traffic); its decisions arrive here and are
 * applied to this worker's endpoints exactly as a single process applies its
 * own. Active health checks and thresholds live in the supervisor.
 */
import type { Endpoint } from '../balancer/endpoint.ts';
import type { Clock } from '../clock.ts';
import { applyAvailability, wallClockMs, returnToService, type AvailabilityUpdate, type FeedbackLoop } from './loop.ts';
import type { EndpointCondition, EndpointHealthView } from './outlier.ts';
import type { Outcome } from '../protocol/outcome.ts';

/** One finished attempt as it travels to the supervisor (a tuple keeps the batches small). */
export type Sample = [address: string, outcome: Outcome, latencyMs: number, status: number, overloaded: boolean];

/** The worker's channel to the deciding supervisor. */
export interface FeedbackLink {
  /** Queues one sample for the supervisor. */
  report(service: string, sample: Sample): void;
  /** Delivers the supervisor's updates for `service`, the latest one at once if there is one; returns the unsubscribe. */
  subscribe(service: string, onUpdate: (update: AvailabilityUpdate) => void): () => void;
}

export class RemoteFeedback implements FeedbackLoop {
  private readonly service: string;
  private readonly link: FeedbackLink;
  private readonly clock: Clock;
  private endpoints = new Map<string, Endpoint>();
  private readonly conditions = new Map<string, EndpointCondition>();
  private latest: AvailabilityUpdate | undefined;
  private unsubscribe: (() => void) | undefined;
  /** How long the last decision took from the supervisor to this worker (wall clock, same host). */
  lastDelayMs: number | undefined;

  constructor(service: string, link: FeedbackLink, clock: Clock) {
    this.service = service;
    this.link = link;
    this.clock = clock;
  }

  start(): void {
    this.unsubscribe ??= this.link.subscribe(this.service, (update) => this.apply(update));
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** Thresholds and timings are the supervisor's; it reloads the same config. */
  reconfigure(): void {}

  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.endpoints = new Map(endpoints.map((e) => [e.address, e]));
    if (this.latest !== undefined) applyAvailability(this.endpoints, this.latest);
  }

  observe(endpoint: Endpoint, outcome: Outcome, latencyMs: number, status: number, overloaded: boolean): void {
    this.link.report(this.service, [endpoint.address, outcome, latencyMs, status, overloaded]);
  }

  /** Health checks run in the supervisor only (one probe per host, not one per worker). */
  health(): void {}

  condition(address: string): EndpointCondition {
    return this.conditions.get(address) ?? 'active';
  }

  /** The detector's numbers are in the supervisor's /debug/state. */
  view(): EndpointHealthView | undefined {
    return undefined;
  }

  private apply(update: AvailabilityUpdate): void {
    this.latest = update;
    this.lastDelayMs = Math.max(0, wallClockMs() - update.decidedAt);
    for (const { address, condition } of update.endpoints) this.conditions.set(address, condition);
    applyAvailability(this.endpoints, update);
    const now = this.clock();
    for (const { address, rampMs } of update.returned) {
      const endpoint = this.endpoints.get(address);
      if (endpoint !== undefined) returnToService(endpoint, this.endpoints.values(), rampMs, now);
    }
  }
}
