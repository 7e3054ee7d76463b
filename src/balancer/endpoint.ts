/**
 * One endpoint of one service as the data path sees it: its discovery spec,
 * its live load (in-flight), its observations, and its upstream connection
 * pool. The same object survives config reloads and discovery updates while
 * its address stays, so load and history are never reset by a reload.
 */
import type { EndpointSpec } from '../config/types.ts';
import { EndpointStats } from './endpoint-stats.ts';
import { isEndpointFailure, type Outcome } from '../protocol/outcome.ts';
import { DEFAULT_PEAK_EWMA, PeakEwma } from './peak-ewma.ts';

/** Per-endpoint metric recorder, pre-bound to its labels (see admin/metrics.ts). */
export interface EndpointRecorder {
  finished(status: number, seconds: number): void;
}

/** What the proxy needs to send a request to this endpoint; owned by the endpoint. */
export interface Upstream {
  close(): Promise<void>;
}

export class Endpoint<U extends Upstream = Upstream> {
  spec: EndpointSpec;
  readonly address: string;
  inFlight = 0;
  readonly stats: EndpointStats;
  readonly upstream: U;
  readonly recorder: EndpointRecorder;
  /** Latency-and-failure cost estimate used by P2C + peak EWMA. */
  readonly load: PeakEwma;
  /** When the endpoint (re)joined the set; slow start ramps its share from here. */
  warmingSince: number;
  /** This endpoint's own ramp (set when it returns from ejection); 0 uses the service's slow start. */
  warmupMs = 0;
  /** Set by the feedback loop: false while ejected or failing health checks (unless in panic). */
  available = true;

  constructor(
    spec: EndpointSpec,
    upstream: U,
    recorder: EndpointRecorder,
    now: number,
    stats = new EndpointStats(),
    load = new PeakEwma(DEFAULT_PEAK_EWMA, now),
  ) {
    this.spec = spec;
    this.address = spec.address;
    this.upstream = upstream;
    this.recorder = recorder;
    this.stats = stats;
    this.load = load;
    this.warmingSince = now;
  }

  /** Records one finished attempt for the balancer's cost and the feedback loop's observations. */
  record(outcome: Outcome, latencyMs: number, now: number): void {
    this.stats.record(outcome, latencyMs, now);
    if (outcome !== 'client_abort') this.load.observe(latencyMs, isEndpointFailure(outcome), now);
  }

  /** Whether the balancer may choose this endpoint. */
  get eligible(): boolean {
    return this.available;
  }
}
