/**
 * The contract every balancing algorithm implements. A balancer chooses among
 * the service's current endpoints; it never owns them, so the endpoint set can
 * change under it (discovery, reload, ejection) between any two picks.
 */
import type { Endpoint } from './endpoint.ts';

export interface Balancer {
  readonly algorithm: string;
  /** Chooses an endpoint for one request; undefined when none is eligible. */
  pick(): Endpoint | undefined;
  /** Replaces the endpoint set; called on every discovery or config change. */
  setEndpoints(endpoints: readonly Endpoint[]): void;
}
