/**
 * The contract every balancing algorithm implements. A balancer chooses among
 * the service's current endpoints; it never owns them, so the endpoint set can
 * change under it (discovery, reload, ejection) between any two picks.
 */
import type { Endpoint } from './endpoint.ts';

export interface Balancer {
  readonly algorithm: string;
  /**
   * Chooses an endpoint for one request at time `now`; `key` is the request's hash key for
   * consistent hashing (undefined otherwise). Undefined when no endpoint is eligible.
   */
  pick(now: number, key: string | undefined): Endpoint | undefined;
  /** Replaces the endpoint set; called on every discovery or config change. */
  setEndpoints(endpoints: readonly Endpoint[]): void;
}
