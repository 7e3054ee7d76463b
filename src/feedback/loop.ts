/**
 * What a service's runtime needs from its feedback loop, whichever process
 * decides: the local controller (one process, or the supervisor of several
 * workers) or a worker's remote view that reports samples and obeys the
 * supervisor's decisions. Also the two ways a decision touches endpoints,
 * shared by both so that a worker applies exactly what a single process would.
 */
import type { Endpoint } from '../balancer/endpoint.ts';
import type { OutlierConfig, EndpointCondition, EndpointHealthView } from './outlier.ts';
import type { Outcome } from '../protocol/outcome.ts';

export interface FeedbackLoop {
  start(): void;
  stop(): void;
  reconfigure(config: OutlierConfig, returnRampMs: number): void;
  setEndpoints(endpoints: readonly Endpoint[]): void;
  /** One finished attempt, from the data path. */
  observe(endpoint: Endpoint, outcome: Outcome, latencyMs: number, status: number, overloaded: boolean): void;
  /** An active health check crossed its threshold. */
  health(address: string, healthy: boolean): void;
  condition(address: string): EndpointCondition;
  view(address: string): EndpointHealthView | undefined;
}

/** The outcome of one round of decisions for one service: who may be picked, who just came back. */
export interface AvailabilityUpdate {
  endpoints: { address: string; available: boolean; condition: EndpointCondition }[];
  /** Endpoints that returned from ejection in this round, with their slow-start ramp. */
  returned: { address: string; rampMs: number }[];
  /** Wall-clock time (ms) of the decision: workers measure how late it reached them. */
  decidedAt: number;
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable between processes of one host. */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Sets each endpoint's availability; endpoints the update does not name keep theirs. */
export function applyAvailability(endpoints: ReadonlyMap<string, Endpoint>, update: AvailabilityUpdate): void {
  for (const { address, available } of update.endpoints) {
    const endpoint = endpoints.get(address);
    if (endpoint !== undefined) endpoint.available = available;
  }
}

/**
 * An endpoint back from ejection: a clean slate for the balancer (its cost estimate starts at
 * the median of its available peers', not at its bad past), ramped in by slow start.
 */
export function returnToService(endpoint: Endpoint, all: Iterable<Endpoint>, rampMs: number, now: number): void {
  endpoint.load.reset(now, peerLatency(endpoint, all, now));
  endpoint.warmingSince = now;
  endpoint.warmupMs = rampMs;
}

/** Median current latency estimate of the other available endpoints (undefined: none). */
function peerLatency(returning: Endpoint, all: Iterable<Endpoint>, now: number): number | undefined {
  const peers: number[] = [];
  for (const e of all) if (e !== returning && e.available) peers.push(e.load.rttAt(now));
  if (peers.length === 0) return undefined;
  peers.sort((a, b) => a - b);
  return peers[peers.length >> 1];
}
