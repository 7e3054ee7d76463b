/**
 * Power of two choices: draw two distinct eligible endpoints at random and
 * send to the cheaper. With a cost that reflects load, this avoids both the
 * herding of "always the least loaded" and the blindness of random choice.
 * Two costs: peak EWMA latency × (in-flight + 1) with a failure penalty
 * (`p2c-ewma`), and in-flight ÷ weight (`least-request`). Slow start divides
 * the cost of warming endpoints by their ramp factor.
 */
import type { Random } from '../clock.ts';
import type { Balancer } from './balancer.ts';
import type { Endpoint } from './endpoint.ts';
import { slowStartFactor, type SlowStartOptions } from './slow-start.ts';

export type CostFunction = (endpoint: Endpoint, now: number) => number;

/**
 * Failure rates further apart than this decide a P2C pick before cost does: health before
 * speed, so a fast-failing host cannot win on latency. Small differences (an isolated
 * failure ≈ 0.05) are left to the cost's failure penalty.
 */
export const FAILURE_RATE_TOLERANCE = 0.1;

export const ewmaCost: CostFunction = (e, now) => e.load.cost(e.inFlight, now);
export const leastRequestCost: CostFunction = (e) => (e.inFlight + 1) / e.spec.weight;

/** Draws that land on ineligible endpoints before falling back to a scan. */
const RANDOM_DRAWS = 4;

export class P2CBalancer implements Balancer {
  readonly algorithm: string;
  private readonly random: Random;
  private readonly cost: CostFunction;
  private readonly slowStart: SlowStartOptions;
  /** Compare failure rates before costs (p2c-ewma); least-request compares load only. */
  private readonly healthFirst: boolean;
  private endpoints: readonly Endpoint[] = [];

  constructor(algorithm: string, cost: CostFunction, random: Random, slowStart: SlowStartOptions) {
    this.algorithm = algorithm;
    this.healthFirst = cost === ewmaCost;
    this.cost = cost;
    this.random = random;
    this.slowStart = slowStart;
  }

  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.endpoints = endpoints;
  }

  pick(now: number): Endpoint | undefined {
    const list = this.endpoints;
    const n = list.length;
    if (n === 0) return undefined;
    if (n === 1) return list[0]!.eligible ? list[0] : undefined;
    let a = this.draw(list, -1);
    if (a < 0) return undefined;
    let b = this.draw(list, a);
    if (b < 0) return list[a];
    // Order-independent ties: compare (cost, index) so the random draw alone decides.
    if (b < a) [a, b] = [b, a];
    const ea = list[a]!;
    const eb = list[b]!;
    if (this.healthFirst) {
      const fa = ea.load.failureRateAt(now);
      const fb = eb.load.failureRateAt(now);
      if (fa - fb > FAILURE_RATE_TOLERANCE) return eb;
      if (fb - fa > FAILURE_RATE_TOLERANCE) return ea;
    }
    return this.effectiveCost(eb, now) < this.effectiveCost(ea, now) ? eb : ea;
  }

  private effectiveCost(e: Endpoint, now: number): number {
    return this.cost(e, now) / slowStartFactor(e, now, this.slowStart);
  }

  /** A random eligible index other than `exclude`, or -1 when there is none. */
  private draw(list: readonly Endpoint[], exclude: number): number {
    const n = list.length;
    for (let i = 0; i < RANDOM_DRAWS; i++) {
      const index = Math.floor(this.random() * n);
      if (index !== exclude && list[index]!.eligible) return index;
    }
    // Rare path (most endpoints ineligible): choose uniformly among the eligible rest.
    let count = 0;
    for (let i = 0; i < n; i++) if (i !== exclude && list[i]!.eligible) count++;
    if (count === 0) return -1;
    let target = Math.floor(this.random() * count);
    for (let i = 0; i < n; i++) {
      if (i === exclude || !list[i]!.eligible) continue;
      if (target-- === 0) return i;
    }
    return -1;
  }
}
