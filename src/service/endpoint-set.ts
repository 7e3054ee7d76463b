/**
 * One service's endpoints: the union of the static list and every discovery
 * source, reconciled by address. An endpoint whose address stays keeps its
 * object (load, history, pool), so a reload or a discovery update never
 * resets statistics or cuts a request in flight; one whose pool settings or
 * identity change gets a fresh pool and keeps its history. New sources plug
 * in by name; subsets are chosen by labels.
 */
import { Endpoint } from '../balancer/endpoint.ts';
import { PeakEwma, type PeakEwmaOptions } from '../balancer/peak-ewma.ts';
import type { Clock } from '../clock.ts';
import type { EndpointSpec } from '../config/types.ts';
import { endpointOptions, HttpUpstream, sameUpstreamOptions, type HttpUpstreamOptions } from '../proxy/http-upstream.ts';
import type { DataPathObserver } from '../stack/observer.ts';
import type { MeshTlsClient } from '../tls/client.ts';

export type HttpEndpoint = Endpoint<HttpUpstream>;

/** What the set needs to build endpoints: pool settings, the peak-EWMA options, mTLS. */
export interface EndpointSettings {
  readonly upstream: HttpUpstreamOptions;
  readonly ewma: PeakEwmaOptions;
}

export interface EndpointSetDeps {
  readonly observer: DataPathObserver;
  readonly clock: Clock;
  readonly tls: MeshTlsClient | undefined;
}

/** What changed in one reconciliation. */
export interface EndpointChange {
  readonly added: readonly string[];
  readonly removed: readonly string[];
}

export class EndpointSet {
  private readonly service: string;
  private readonly deps: EndpointSetDeps;
  private readonly endpoints = new Map<string, HttpEndpoint>();
  /** Every source's current list, by source name ("static", "file", …). */
  private readonly lists = new Map<string, readonly EndpointSpec[]>();
  private readonly sourcesOf = new Map<string, string[]>();

  constructor(service: string, deps: EndpointSetDeps) {
    this.service = service;
    this.deps = deps;
  }

  get size(): number {
    return this.endpoints.size;
  }

  get(address: string): HttpEndpoint | undefined {
    return this.endpoints.get(address);
  }

  all(): HttpEndpoint[] {
    return [...this.endpoints.values()];
  }

  /** The sources that list `address`. */
  sources(address: string): readonly string[] {
    return this.sourcesOf.get(address) ?? [];
  }

  /** Endpoints whose labels include every one of `labels` (a subset, e.g. `version: v2`). */
  subset(labels: Readonly<Record<string, string>>): HttpEndpoint[] {
    const wanted = Object.entries(labels);
    return this.all().filter((e) => wanted.every(([k, v]) => e.spec.labels[k] === v));
  }

  /** Sets one source's list (an empty list removes what only it listed); call reconcile() after. */
  setSource(name: string, endpoints: readonly EndpointSpec[] | undefined): void {
    if (endpoints === undefined) this.lists.delete(name);
    else this.lists.set(name, endpoints);
  }

  /** Makes the set equal to the union of every source, keeping objects whose address and pool settings stay. */
  reconcile(settings: EndpointSettings): EndpointChange {
    const wanted = new Map<string, { spec: EndpointSpec; sources: string[] }>();
    for (const [source, list] of this.lists) {
      for (const spec of list) {
        const seen = wanted.get(spec.address);
        if (seen === undefined) wanted.set(spec.address, { spec, sources: [source] });
        else {
          seen.sources.push(source);
          // Labels from every source that lists the address (a pod behind two Services is in both subsets); the first wins a conflict.
          const missing = Object.entries(spec.labels).filter(([k]) => !(k in seen.spec.labels));
          if (missing.length > 0) seen.spec = { ...seen.spec, labels: { ...Object.fromEntries(missing), ...seen.spec.labels } };
        }
      }
    }
    const now = this.deps.clock();
    const added: string[] = [];
    const removed: string[] = [];
    // Pool settings or identity changed: a fresh pool, but the endpoint keeps its history.
    const carried = new Map<string, HttpEndpoint>();
    for (const [address, endpoint] of this.endpoints) {
      const next = wanted.get(address);
      if (
        next !== undefined &&
        sameUpstreamOptions(endpoint.upstream.options, endpointOptions(settings.upstream, next.spec)) &&
        next.spec.identity === endpoint.spec.identity &&
        JSON.stringify(next.spec.via) === JSON.stringify(endpoint.spec.via)
      )
        continue;
      this.endpoints.delete(address);
      void endpoint.upstream.close();
      if (next !== undefined) carried.set(address, endpoint);
      else {
        removed.push(address);
        this.sourcesOf.delete(address);
        this.deps.observer.removeEndpoint(this.service, address);
      }
    }
    for (const [address, { spec, sources }] of wanted) {
      this.sourcesOf.set(address, sources);
      const existing = this.endpoints.get(address);
      if (existing !== undefined) {
        existing.spec = spec;
        continue;
      }
      const recorder = this.deps.observer.forEndpoint(this.service, address);
      const old = carried.get(address);
      const fresh = new Endpoint(
        spec,
        new HttpUpstream(spec, settings.upstream, this.deps.tls),
        recorder,
        now,
        old?.stats,
        old?.load ?? new PeakEwma(settings.ewma, now),
      );
      if (old !== undefined) fresh.warmingSince = old.warmingSince;
      this.endpoints.set(address, fresh);
      if (old === undefined) added.push(address);
    }
    return { added, removed };
  }

  /** New peak-EWMA options for every endpoint (a balancer change). */
  setEwmaOptions(options: PeakEwmaOptions): void {
    for (const e of this.endpoints.values()) e.load.setOptions(options);
  }

  /** Closes every pool once its requests finish, and forgets every endpoint. */
  async close(): Promise<void> {
    const pools = this.all().map((e) => e.upstream.close());
    this.endpoints.clear();
    this.sourcesOf.clear();
    await Promise.allSettled(pools);
  }
}
