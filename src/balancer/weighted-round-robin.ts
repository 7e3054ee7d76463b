/**
 * Smooth weighted round robin (nginx's algorithm): every pick adds each
 * eligible endpoint's weight to its running score, chooses the highest score
 * and subtracts the total. Over any window of Σweights picks each endpoint is
 * chosen exactly its weight's times, interleaved rather than in bursts.
 * Weights come from discovery, scaled by slow start.
 */
import type { Balancer } from './balancer.ts';
import type { Endpoint } from './endpoint.ts';
import { slowStartFactor, type SlowStartOptions } from './slow-start.ts';

export class WeightedRoundRobinBalancer implements Balancer {
  readonly algorithm = 'weighted-round-robin';
  private readonly slowStart: SlowStartOptions;
  private endpoints: readonly Endpoint[] = [];
  private scores = new Float64Array(0);

  constructor(slowStart: SlowStartOptions) {
    this.slowStart = slowStart;
  }

  setEndpoints(endpoints: readonly Endpoint[]): void {
    // Keep the scores of endpoints that stay, so a discovery update does not restart the cycle.
    const previous = new Map<Endpoint, number>();
    this.endpoints.forEach((e, i) => previous.set(e, this.scores[i]!));
    this.endpoints = endpoints;
    this.scores = new Float64Array(endpoints.length);
    endpoints.forEach((e, i) => (this.scores[i] = previous.get(e) ?? 0));
  }

  pick(now: number): Endpoint | undefined {
    const list = this.endpoints;
    let best = -1;
    let total = 0;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (!e.eligible) continue;
      const weight = e.spec.weight * slowStartFactor(e, now, this.slowStart);
      total += weight;
      this.scores[i]! += weight;
      if (best < 0 || this.scores[i]! > this.scores[best]!) best = i;
    }
    if (best < 0) return undefined;
    this.scores[best]! -= total;
    return list[best];
  }
}
