/**
 * Where a route's requests go: subsets of the service's endpoints chosen by
 * labels (`version: v2`), each balanced on its own over the same endpoint
 * objects (so load, latency and ejections are shared with every other view
 * of them), and weighted splits between subsets. A split passes over a
 * subset with no available endpoints (none, or all ejected) while another
 * has some, so a missing or ejected canary sends its share to the rest
 * instead of failing it. A subset whose endpoints are all ejected, with
 * nowhere else to go, is balanced over all of them anyway (panic, as Envoy
 * does per subset): a failing answer beats none.
 */
import type { Balancer } from '../balancer/balancer.ts';
import type { Endpoint } from '../balancer/endpoint.ts';
import type { Clock, Random } from '../clock.ts';
import { MeshError } from '../errors.ts';
import { AttemptLease, Attempts, type AttemptSink } from '../stack/attempt.ts';

/** Anything an attempt can begin on: one subset, or a split between several. */
export interface AttemptSource<E extends Endpoint = Endpoint> {
  begin(key: string | undefined, avoid: Endpoint | undefined): AttemptLease<E>;
  /** Endpoints it has. */
  readonly size: number;
  /** Endpoints it has that are not ejected or failing health checks. */
  readonly available: number;
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
  private readonly deps: SubsetDeps;
  private mine: readonly E[] = [];

  constructor(labels: Labels, deps: SubsetDeps) {
    this.labels = labels;
    this.deps = deps;
    this.balancer = deps.balancer();
    this.attempts = new Attempts<E>(
      deps.service,
      () => this.balancer,
      () => deps.capacity(),
      deps.clock,
      deps.sink,
    );
  }

  get size(): number {
    return this.mine.length;
  }

  get available(): number {
    let n = 0;
    for (const e of this.mine) if (e.eligible) n++;
    return n;
  }

  unavailable(): number {
    return this.mine.length - this.available;
  }

  begin(key: string | undefined, avoid: Endpoint | undefined): AttemptLease<E> {
    try {
      return this.attempts.begin(key, avoid);
    } catch (err) {
      // Panic within the subset: every endpoint ejected, so the least loaded one takes it anyway.
      if (!(err instanceof MeshError) || err.code !== 'no_endpoints' || this.mine.length === 0) throw err;
      let best = this.mine[0] as E;
      for (const e of this.mine) if (e.inFlight < best.inFlight) best = e;
      if (best.inFlight >= this.deps.capacity()) throw err;
      return new AttemptLease(best, this.deps.clock, this.deps.sink);
    }
  }

  setEndpoints(all: readonly E[]): void {
    this.mine = all.filter((e) => labelsMatch(e, this.labels));
    this.balancer.setEndpoints(this.mine);
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

  get available(): number {
    let n = 0;
    for (const b of this.backends) if (b.weight() > 0) n += b.source.available;
    return n;
  }

  unavailable(): number {
    return this.size - this.available;
  }

  begin(key: string | undefined, avoid: Endpoint | undefined): AttemptLease<E> {
    return this.pick().begin(key, avoid);
  }

  /** The backend for one attempt: by weight among those with available endpoints, else among those with any. */
  pick(): AttemptSource<E> {
    return this.pickBy((s) => s.available > 0) ?? this.pickBy((s) => s.size > 0) ?? this.none();
  }

  private pickBy(usable: (source: AttemptSource<E>) => boolean): AttemptSource<E> | undefined {
    let total = 0;
    for (const b of this.backends) if (usable(b.source)) total += Math.max(0, b.weight());
    if (total <= 0) return undefined;
    let point = this.random() * total;
    let last: AttemptSource<E> | undefined;
    for (const b of this.backends) {
      const w = usable(b.source) ? Math.max(0, b.weight()) : 0;
      if (w === 0) continue;
      last = b.source;
      if (point < w) return b.source;
      point -= w;
    }
    return last;
  }

  private none(): never {
    throw new MeshError('no_endpoints', `service "${this.service}" has no available endpoints for this route`, { retryAfterSeconds: 1 });
  }
}
