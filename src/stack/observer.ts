/**
 * The narrow interface through which the data path reports what it sees.
 * Layers call these; only admin/metrics.ts turns them into Prometheus series,
 * so the hot path never touches prom-client label lookups directly.
 */
import type { EndpointRecorder } from '../balancer/endpoint.ts';
import type { HopProtocol } from './trace.ts';

export interface ServiceRecorder {
  started(): void;
  /** A request that never reached an endpoint (no endpoints, shed, bad input). */
  finishedWithoutEndpoint(status: number, seconds: number): void;
  ended(): void;
  reset(side: 'client' | 'upstream'): void;
  /** A retry was sent; `reason` is the status or error code that caused it. */
  retried(reason: string): void;
  /** A retry was wanted but the budget was spent. */
  budgetExhausted(): void;
  /**
   * A TCP connection through the service's listener: connected, could not be, refused by source
   * (allowFrom), by the access rules or the rate limit, or cut by an injected fault (never counted
   * as a real failure).
   */
  tcpConnection(endpoint: string, result: TcpConnectionResult): void;
}

export type TcpConnectionResult = 'connected' | 'connect_failed' | 'no_endpoints' | 'source_refused' | 'forbidden' | 'rate_limited' | 'fault_abort';

export interface DataPathObserver {
  forService(service: string): ServiceRecorder;
  forEndpoint(service: string, endpoint: string): EndpointRecorder;
  /** Forgets the series of an endpoint that discovery removed. */
  removeEndpoint(service: string, endpoint: string): void;
}

/** The dependency map's input (admin/traffic-graph.ts): one exchange or tunnel, from whom, to which service and endpoint. */
export interface EdgeRecorder {
  /** `failed`: a 5xx or meshd's failure; `seconds`: the exchange's duration, or a tunnel's handshake or connect. */
  exchange(caller: string, service: string, endpoint: string | undefined, failed: boolean, seconds: number, protocol: HopProtocol): void;
}
