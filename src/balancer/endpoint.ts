/**
 * One endpoint of one service as the data path sees it: its discovery spec,
 * its live load (in-flight), its observations, and its upstream connection
 * pool. The same object survives config reloads and discovery updates while
 * its address stays, so load and history are never reset by a reload.
 */
import type { EndpointSpec } from '../config/types.ts';
import { EndpointStats } from '../feedback/endpoint-stats.ts';

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

  constructor(spec: EndpointSpec, upstream: U, recorder: EndpointRecorder, stats = new EndpointStats()) {
    this.spec = spec;
    this.address = spec.address;
    this.upstream = upstream;
    this.recorder = recorder;
    this.stats = stats;
  }

  /** Whether the balancer may choose this endpoint (the feedback loop will eject some). */
  get eligible(): boolean {
    return true;
  }
}
