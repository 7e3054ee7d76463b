/**
 * Locality preference: endpoints in this host's zone are closer, cheaper and
 * faster, so they get the traffic while the zone has healthy capacity. Like
 * Envoy's priority spill-over, the local share is min(1, healthy fraction ×
 * overprovisioning): with the default 1.4, a zone keeps all traffic until
 * more than ~29 % of its endpoints are unavailable, then spills the rest
 * proportionally to the other zones.
 */
import type { Random } from '../clock.ts';
import type { Balancer } from './balancer.ts';
import type { Endpoint } from './endpoint.ts';

export const DEFAULT_OVERPROVISIONING = 1.4;

export class ZoneAwareBalancer implements Balancer {
  readonly algorithm: string;
  private readonly zone: string;
  private readonly local: Balancer;
  private readonly remote: Balancer;
  private readonly random: Random;
  private readonly overprovisioning: number;
  private localEndpoints: readonly Endpoint[] = [];

  /** `local` and `remote` are two instances of the same algorithm. */
  constructor(zone: string, local: Balancer, remote: Balancer, random: Random, overprovisioning = DEFAULT_OVERPROVISIONING) {
    this.algorithm = local.algorithm;
    this.zone = zone;
    this.local = local;
    this.remote = remote;
    this.random = random;
    this.overprovisioning = overprovisioning;
  }

  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.localEndpoints = endpoints.filter((e) => e.spec.zone === this.zone);
    this.local.setEndpoints(this.localEndpoints);
    // Endpoints without a zone count as remote: locality is only claimed when known.
    this.remote.setEndpoints(endpoints.filter((e) => e.spec.zone !== this.zone));
  }

  /** Share of requests that stay in the local zone right now. */
  localShare(): number {
    const total = this.localEndpoints.length;
    if (total === 0) return 0;
    let healthy = 0;
    for (const e of this.localEndpoints) if (e.eligible) healthy++;
    return Math.min(1, (healthy / total) * this.overprovisioning);
  }

  pick(now: number, key: string | undefined): Endpoint | undefined {
    const share = this.localShare();
    if (share >= 1 || (share > 0 && this.random() < share)) {
      return this.local.pick(now, key) ?? this.remote.pick(now, key);
    }
    return this.remote.pick(now, key) ?? this.local.pick(now, key);
  }
}
