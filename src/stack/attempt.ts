/**
 * One attempt on one endpoint, whatever the protocol: an HTTP request, a
 * WebSocket tunnel, a TCP connection. `Attempts.begin` picks the endpoint
 * (passing over the one the previous attempt failed on, and full ones) and
 * counts it in flight; the lease reports how the attempt went once (the
 * endpoint's statistics and the feedback loop, through one sink) and gives
 * the in-flight place back once. An HTTP attempt does both at its end; a
 * tunnel reports at its handshake and is released when it closes.
 */
import type { Balancer } from '../balancer/balancer.ts';
import type { Endpoint } from '../balancer/endpoint.ts';
import type { Clock } from '../clock.ts';
import { MeshError } from '../errors.ts';
import type { Outcome } from '../protocol/outcome.ts';

/** Where every attempt's result goes: the endpoint's record and the service's feedback loop. */
export interface AttemptSink {
  attemptFinished(endpoint: Endpoint, outcome: Outcome, latencyMs: number, status: number, overloaded: boolean): void;
}

export class AttemptLease<E extends Endpoint = Endpoint> {
  readonly endpoint: E;
  readonly startedAt: number;
  private readonly clock: Clock;
  private readonly sink: AttemptSink;
  private reported = false;
  private released = false;

  constructor(endpoint: E, clock: Clock, sink: AttemptSink) {
    this.endpoint = endpoint;
    this.clock = clock;
    this.sink = sink;
    this.startedAt = clock();
    endpoint.inFlight++;
  }

  /** How the attempt went (once): latency from its start, the upstream's status (0: none), its overload signal. */
  report(outcome: Outcome, status = 0, overloaded = false): number {
    const latencyMs = this.clock() - this.startedAt;
    if (this.reported) return latencyMs;
    this.reported = true;
    this.endpoint.record(outcome, latencyMs, this.clock());
    this.sink.attemptFinished(this.endpoint, outcome, latencyMs, status, overloaded);
    return latencyMs;
  }

  /** Gives the endpoint's in-flight place back (once). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.endpoint.inFlight--;
  }

  /** Both at once: an attempt that is over. */
  finish(outcome: Outcome, status = 0, overloaded = false): number {
    this.release();
    return this.report(outcome, status, overloaded);
  }
}

/** Whatever an attempt can begin on: a service's endpoints, a subset of them, a weighted split. */
export interface AttemptPicker<E extends Endpoint = Endpoint> {
  begin(key: string | undefined, avoid: Endpoint | undefined): AttemptLease<E>;
  /** Endpoints passed over now because they are ejected or failing health checks (traces say so). */
  unavailable?(): number;
}

/** How many times a pick that lands on an endpoint to pass over is retried. */
const REPICKS = 3;

export class Attempts<E extends Endpoint = Endpoint> implements AttemptPicker<E> {
  private readonly service: string;
  private readonly balancer: () => Balancer;
  private readonly capacity: () => number;
  private readonly clock: Clock;
  private readonly sink: AttemptSink;

  /** `capacity`: attempts one endpoint may have in flight (pool size + queue); read per pick, it follows reloads. */
  constructor(service: string, balancer: () => Balancer, capacity: () => number, clock: Clock, sink: AttemptSink) {
    this.service = service;
    this.balancer = balancer;
    this.capacity = capacity;
    this.clock = clock;
    this.sink = sink;
  }

  /**
   * Picks an endpoint and begins an attempt on it. `avoid` (the endpoint the previous attempt
   * failed on) and full endpoints are passed over when another pick finds better. Throws
   * `no_endpoints` or `overloaded` (every endpoint full).
   */
  begin(key: string | undefined, avoid: Endpoint | undefined): AttemptLease<E> {
    const now = this.clock();
    const balancer = this.balancer();
    const capacity = this.capacity();
    let endpoint = balancer.pick(now, key);
    for (let i = 0; i < REPICKS && endpoint !== undefined && (endpoint === avoid || endpoint.inFlight >= capacity); i++) {
      endpoint = balancer.pick(now, key) ?? endpoint;
    }
    if (endpoint === undefined) {
      throw new MeshError('no_endpoints', `service "${this.service}" has no available endpoints`, { retryAfterSeconds: 1 });
    }
    if (endpoint.inFlight >= capacity) {
      throw new MeshError('overloaded', `every endpoint of "${this.service}" is at its limit of ${capacity} requests in flight`, { retryAfterSeconds: 1 });
    }
    return new AttemptLease(endpoint as E, this.clock, this.sink);
  }
}
