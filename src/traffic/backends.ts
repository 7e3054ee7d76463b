/**
 * Where a route's requests go: subsets of the service's endpoints chosen by
 * labels (`version: v2`), each balanced on its own over the same endpoint
 * objects (so load, latency and ejections are shared with every other view
 * of them), and weighted splits between subsets. A split passes over a
 * subset that has no endpoints while another has some, so a missing canary
 * deployment sends its share to the rest instead of failing it.
 */
import type { Balancer } from '../balancer/balancer.ts';
import type { Endpoint } from '../balancer/endpoint.ts';
import type { Clock, Random } from '../clock.ts';
import { MeshError } from '../errors.ts';
import { Attempts, type AttemptLease, type AttemptSink } from '../stack/attempt.ts';

/** Anything an attempt can begin on: one subset, or a split between several. */
export interface AttemptSource<E extends Endpoint = Endpoint> {
  begin(key: string | undefined, avoid: Endpoint | undefined): AttemptLease<E>;
  /** Endpoints it can choose from now. */
  readonly size: number;
}

export type Labels = Readonly<Record<string, string>>;

export function labelsMatch(endpoint: Endpoint, labels: Labels): boolean {
  for (const key in labels) if (endpoint.spec.labels[key] !== labels[key]) return false;
  return true;
}

export interface SubsetDeps {
  readonly service: string;
  readonly clock: Clock;
  readonly sink: AttemptSink;
  /** Attempts one endpoint may have in flight (read per pick: it follows reloads). */
  capacity(): number;
  /** A fresh balancer of the service's algorithm. */
  balancer(): Balancer;
}

/** The endpoints whose labels include `labels`, with their own balancer. */
export class Subset<E extends Endpoint = Endpoint> implements AttemptSource<E> {
  readonly labels: Labels;
  private balancer: Balancer;
  private readonly attempts: Attempts<E>;
  size = 0;

  constructor(labels: Labels, deps: SubsetDeps) {
    this.labels = labels;
    this.balancer = deps.balancer();
    this.attempts = new Attempts<E>(
      deps.service,
      () => this.balancer,
      () => deps.capacity(),
      deps.clock,
      deps.sink,
    );
  }

  begin(key: string | undefined, avoid: Endpoint | undefined): AttemptLease<E> {
    return this.attempts.begin(key, avoid);
  }

  setEndpoints(all: readonly E[]): void {
    const mine = all.filter((e) => labelsMatch(e, this.labels));
    this.size = mine.length;
    this.balancer.setEndpoints(mine);
  }

  /** A new algorithm (config change): a fresh balancer over the same endpoints. */
  replaceBalancer(balancer: Balancer, all: readonly E[]): void {
    this.balancer = balancer;
    this.setEndpoints(all);
  }
}

/** Every subset a service's routes, mirrors and canary name, made once per label set and kept in step with the endpoints. */
export class Subsets<E extends Endpoint = Endpoint> {
  private readonly deps: SubsetDeps;
  private readonly byKey = new Map<string, Subset<E>>();
  private endpoints: readonly E[] = [];

  constructor(deps: SubsetDeps) {
    this.deps = deps;
  }

  get(labels: Labels): Subset<E> {
    const key = subsetKey(labels);
    let subset = this.byKey.get(key);
    if (subset === undefined) {
      subset = new Subset<E>(labels, this.deps);
      subset.setEndpoints(this.endpoints);
      this.byKey.set(key, subset);
    }
    return subset;
  }

  /** Keeps only the subsets in `keep` (those the current config names). */
  retain(keep: ReadonlySet<string>): void {
    for (const key of this.byKey.keys()) if (!keep.has(key)) this.byKey.delete(key);
  }

  setEndpoints(all: readonly E[]): void {
    this.endpoints = all;
    for (const subset of this.byKey.values()) subset.setEndpoints(all);
  }

  replaceBalancers(): void {
    for (const subset of this.byKey.values()) subset.replaceBalancer(this.deps.balancer(), this.endpoints);
  }
}

/** Subsets are equal when their labels are, whatever the order they were written in. */
export function subsetKey(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** A weighted split: each attempt picks a backend in proportion to its weight (read per pick, so a canary can move it). */
export class WeightedSplit<E extends Endpoint = Endpoint> implements AttemptSource<E> {
  private readonly service: string;
  private readonly backends: readonly { readonly source: AttemptSource<E>; readonly weight: () => number }[];
  private readonly random: Random;

  constructor(service: string, backends: readonly { readonly source: AttemptSource<E>; readonly weight: () => number }[], random: Random) {
    this.service = service;
    this.backends = backends;
    this.random = random;
  }

  get size(): number {
    let size = 0;
    for (const b of this.backends) if (b.weight() > 0) size += b.source.size;
    return size;
  }

  begin(key: string | undefined, avoid: Endpoint | undefined): AttemptLease<E> {
    return this.pick().begin(key, avoid);
  }

  /** The backend for one attempt: by weight among those with endpoints. */
  pick(): AttemptSource<E> {
    let total = 0;
    for (const b of this.backends) if (b.source.size > 0) total += Math.max(0, b.weight());
    if (total <= 0) throw new MeshError('no_endpoints', `service "${this.service}" has no available endpoints for this route`, { retryAfterSeconds: 1 });
    let point = this.random() * total;
    let last: AttemptSource<E> | undefined;
    for (const b of this.backends) {
      const w = b.source.size > 0 ? Math.max(0, b.weight()) : 0;
      if (w === 0) continue;
      last = b.source;
      if (point < w) return b.source;
      point -= w;
    }
    return last as AttemptSource<E>;
  }
}
