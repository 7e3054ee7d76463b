/**
 * Round robin: each eligible endpoint in turn. Endpoints that are not
 * eligible are skipped without disturbing the rotation of the others.
 */
import type { Balancer } from './balancer.ts';
import type { Endpoint } from './endpoint.ts';

export class RoundRobinBalancer implements Balancer {
  readonly algorithm = 'round-robin';
  private endpoints: readonly Endpoint[] = [];
  private next = 0;

  /** `start` offsets the rotation so that many daemons do not hit the same endpoint first. */
  constructor(start = 0) {
    this.next = start;
  }

  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.endpoints = endpoints;
  }

  pick(): Endpoint | undefined {
    const list = this.endpoints;
    const n = list.length;
    for (let tries = 0; tries < n; tries++) {
      const index = this.next % n;
      this.next = index + 1 === n ? 0 : index + 1;
      const candidate = list[index]!;
      if (candidate.eligible) return candidate;
    }
    return undefined;
  }
}
