/**
 * The runtime around a service's outlier detector: the only part of the
 * feedback loop that touches timers. It feeds samples from the data path and
 * clock ticks into the detector, applies its decisions to the endpoints
 * (availability, slow-start ramp on return), and explains each decision as a
 * log event and a metric.
 */
import type { Endpoint } from '../balancer/endpoint.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { applyAvailability, wallClockMs, returnToService, type AvailabilityUpdate, type FeedbackLoop } from './loop.ts';
import type { Outcome } from '../protocol/outcome.ts';
import { OutlierDetector, type Decision, type EndpointCondition, type EndpointHealthView, type OutlierConfig } from './outlier.ts';

export interface DecisionRecorder {
  /** `endpoint`: the endpoint it concerns, when one. */
  decision(service: string, decision: string, reason: string, endpoint?: string): void;
}

export interface FeedbackDeps {
  readonly clock: Clock;
  readonly log: Logger;
  readonly recorder: DecisionRecorder;
  /** Evaluation period of the window rules and returns. */
  readonly tickMs: number;
  /** Set in the supervisor of several workers: every change of availability is pushed to them. */
  readonly publish?: ((update: AvailabilityUpdate) => void) | undefined;
}

/** The deciding feedback loop: a single process's own, or the supervisor's for all its workers. */
export class FeedbackController implements FeedbackLoop {
  readonly detector: OutlierDetector;
  private readonly service: string;
  private readonly deps: FeedbackDeps;
  private endpoints = new Map<string, Endpoint>();
  private timer: NodeJS.Timeout | undefined;
  /** Slow-start ramp for endpoints coming back. */
  private returnRampMs: number;

  constructor(service: string, config: OutlierConfig, returnRampMs: number, deps: FeedbackDeps) {
    this.service = service;
    this.deps = deps;
    this.returnRampMs = returnRampMs;
    this.detector = new OutlierDetector(config);
  }

  reconfigure(config: OutlierConfig, returnRampMs: number): void {
    this.detector.setConfig(config);
    this.returnRampMs = returnRampMs;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.deps.tickMs);
    this.timer.unref();
  }

  /** One evaluation of the window rules and returns (the timer's job; tests call it directly). */
  tick(): void {
    this.apply(this.detector.step({ type: 'tick' }, this.deps.clock()));
  }

  stop(): void {
    clearInterval(this.timer);
  }

  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.endpoints = new Map(endpoints.map((e) => [e.address, e]));
    this.apply(this.detector.step({ type: 'endpoints', addresses: [...this.endpoints.keys()] }, this.deps.clock()));
  }

  /** One finished attempt, from the data path. */
  observe(endpoint: Endpoint, outcome: Outcome, latencyMs: number, status: number, overloaded: boolean): void {
    const decisions = this.detector.step({ type: 'sample', endpoint: endpoint.address, outcome, latencyMs, status, overloaded }, this.deps.clock());
    if (decisions.length > 0) this.apply(decisions);
  }

  /** An active health check crossed its threshold. */
  health(address: string, healthy: boolean): void {
    this.apply(this.detector.step({ type: 'health', endpoint: address, healthy }, this.deps.clock()));
  }

  view(address: string): EndpointHealthView | undefined {
    return this.detector.view(address, this.deps.clock());
  }

  condition(address: string): EndpointCondition {
    return this.detector.condition(address);
  }

  /** Every endpoint's availability and condition now (sent to a worker that just started). */
  snapshot(): AvailabilityUpdate {
    const endpoints = [...this.endpoints.keys()].map((address) => ({
      address,
      available: this.detector.available(address),
      condition: this.detector.condition(address),
    }));
    return { endpoints, returned: [], decidedAt: wallClockMs() };
  }

  private apply(decisions: Decision[]): void {
    if (decisions.length === 0) return;
    const { log, recorder, clock } = this.deps;
    const returned: { address: string; rampMs: number }[] = [];
    const service = this.service;
    for (const d of decisions) {
      switch (d.type) {
        case 'eject':
          recorder.decision(service, 'eject', d.reason, d.endpoint);
          log.warn(
            { event: 'eject', service, endpoint: d.endpoint, reason: d.reason, ...d.detail, ejectedForMs: d.durationMs, ejections: d.ejections },
            `ejected ${d.endpoint}: ${d.reason}`,
          );
          break;
        case 'eject_skipped':
          recorder.decision(service, 'eject_skipped', d.reason, d.endpoint);
          log.warn(
            { event: 'eject_skipped', service, endpoint: d.endpoint, reason: d.reason, cause: d.cause, ...d.detail },
            `kept ${d.endpoint} despite ${d.reason}: max ejection share reached`,
          );
          break;
        case 'return': {
          recorder.decision(service, 'return', d.reason, d.endpoint);
          const endpoint = this.endpoints.get(d.endpoint);
          if (endpoint !== undefined) returnToService(endpoint, this.endpoints.values(), this.returnRampMs, clock());
          returned.push({ address: d.endpoint, rampMs: this.returnRampMs });
          log.info(
            { event: 'return', service, endpoint: d.endpoint, reason: d.reason, probationMs: d.probationMs, rampMs: this.returnRampMs },
            `returned ${d.endpoint}: ${d.reason}`,
          );
          break;
        }
        case 'panic':
          recorder.decision(service, 'panic', d.on ? 'on' : 'off');
          if (d.on)
            log.error(
              { event: 'panic', service, available: d.available, total: d.total },
              `PANIC: only ${d.available} of ${d.total} endpoints of ${service} available; balancing over all of them`,
            );
          else log.warn({ event: 'panic', service, available: d.available, total: d.total }, `panic over for ${service}`);
          break;
      }
    }
    const update = this.snapshot();
    update.returned = returned;
    applyAvailability(this.endpoints, update);
    this.deps.publish?.(update);
  }
}
