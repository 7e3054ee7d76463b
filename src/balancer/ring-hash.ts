/**
 * Consistent hashing on a ring (ketama): each endpoint owns `pointsPerWeight
 * × weight` points on a 32-bit ring; a request's key goes to the owner of the
 * first point at or after its hash. Adding one endpoint to N moves only the
 * keys that land on its new points, ≈ 1/(N+1) of them. Ineligible owners are
 * skipped clockwise, so ejecting an endpoint moves only its own keys.
 * Requests without a key are spread by the fallback balancer.
 */
import type { Balancer } from './balancer.ts';
import type { Endpoint } from './endpoint.ts';
import { hash32 } from './hash.ts';

export const DEFAULT_POINTS_PER_WEIGHT = 160;

export class RingHashBalancer implements Balancer {
  readonly algorithm = 'ring-hash';
  private readonly fallback: Balancer;
  private readonly pointsPerWeight: number;
  private endpoints: readonly Endpoint[] = [];
  private hashes = new Uint32Array(0);
  private owners = new Int32Array(0);

  constructor(fallback: Balancer, pointsPerWeight = DEFAULT_POINTS_PER_WEIGHT) {
    this.fallback = fallback;
    this.pointsPerWeight = pointsPerWeight;
  }

  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.endpoints = endpoints;
    this.fallback.setEndpoints(endpoints);
    const points: { hash: number; owner: number }[] = [];
    endpoints.forEach((e, owner) => {
      const count = this.pointsPerWeight * e.spec.weight;
      for (let v = 0; v < count; v++) points.push({ hash: hash32(`${e.address}-${v}`), owner });
    });
    // Ties broken by address so that the ring does not depend on discovery order.
    points.sort((x, y) => x.hash - y.hash || (endpoints[x.owner]!.address < endpoints[y.owner]!.address ? -1 : 1));
    this.hashes = Uint32Array.from(points, (p) => p.hash);
    this.owners = Int32Array.from(points, (p) => p.owner);
  }

  pick(now: number, key: string | undefined): Endpoint | undefined {
    if (key === undefined) return this.fallback.pick(now, undefined);
    const size = this.hashes.length;
    if (size === 0) return undefined;
    let index = this.firstAtOrAfter(hash32(key));
    for (let step = 0; step < size; step++) {
      const owner = this.endpoints[this.owners[index]!]!;
      if (owner.eligible) return owner;
      index = index + 1 === size ? 0 : index + 1;
    }
    return undefined;
  }

  private firstAtOrAfter(h: number): number {
    let lo = 0;
    let hi = this.hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.hashes[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.hashes.length ? 0 : lo;
  }
}
