/**
 * Kubernetes discovery of one Service: its EndpointSlices, from the shared
 * list + watch of its namespace (kubernetes-slices.ts), read into endpoints:
 * ready ones only, at the port named or numbered, each with its zone, node
 * and pod. Credentials: the pod's service account, or a kubeconfig file.
 */
import { formatSocketAddress } from '../config/address.ts';
import type { EndpointSpec, KubernetesDiscoveryConfig } from '../config/types.ts';
import type { Logger } from '../log.ts';
import type { SliceInformer, SliceInformers, SliceObject, SliceSubscriber } from './kubernetes-slices.ts';

export type { SliceObject } from './kubernetes-slices.ts';
import type { DiscoverySource } from './source.ts';
import { SourceRecord, type UpdateResult } from './source-record.ts';

export interface KubernetesSourceDeps {
  readonly log: Logger;
  /** Wall-clock milliseconds. */
  readonly now: () => number;
  readonly informers: SliceInformers;
  changed(): void;
  counted(result: UpdateResult): void;
}

export class KubernetesSource implements DiscoverySource, SliceSubscriber {
  readonly name = 'kubernetes';
  private readonly service: string;
  private readonly config: KubernetesDiscoveryConfig;
  private readonly deps: KubernetesSourceDeps;
  private readonly record: SourceRecord;
  private readonly informer: SliceInformer;
  private stopped = false;

  constructor(service: string, config: KubernetesDiscoveryConfig, acceptEmptyAfterMs: number, deps: KubernetesSourceDeps) {
    this.service = service;
    this.config = config;
    this.deps = deps;
    this.record = new SourceRecord(acceptEmptyAfterMs, deps.now, (result) => deps.counted(result));
    this.informer = deps.informers.get(config.namespace, config.kubeconfig, config.idleTimeoutMs);
  }

  get endpoints(): readonly EndpointSpec[] {
    return this.record.endpoints;
  }

  /** Resolves once the namespace's first list has answered (or failed); then follows its watch. */
  start(): Promise<void> {
    return this.informer.subscribe(this.config.service, this);
  }

  stop(): void {
    this.stopped = true;
    this.informer.unsubscribe(this.config.service, this);
    this.deps.informers.release(this.informer);
  }

  status(): unknown {
    // A quiet Service gets no events of its own: the namespace's watch says how fresh its set is.
    return { ...this.record.status(), service: this.config.service, ...this.informer.status(), staleSeconds: this.informer.staleSeconds() };
  }

  changed(slices: readonly SliceObject[]): void {
    if (this.stopped) return;
    if (this.record.offer(endpointsOf(slices, this.config.port))) {
      this.deps.log.info(
        { service: this.service, source: 'kubernetes', endpoints: this.record.endpoints.length },
        'Kubernetes discovery changed the endpoints',
      );
      this.deps.changed();
    }
  }

  failed(reason: string): void {
    if (!this.stopped) this.record.fail(reason);
  }
}

/**
 * The ready endpoints of every slice, at the chosen port: the first address of each (they are
 * interchangeable, per the API), its zone, and its node and pod as labels. An endpoint whose
 * readiness is unknown counts as ready, as the API asks of consumers.
 */
export function endpointsOf(slices: Iterable<SliceObject>, wanted: string | number | undefined): EndpointSpec[] {
  const out = new Map<string, EndpointSpec>();
  for (const slice of slices) {
    if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') continue;
    const ports = slice.ports ?? [];
    const port = (wanted === undefined ? ports[0] : ports.find((p) => (typeof wanted === 'number' ? p.port === wanted : p.name === wanted)))?.port;
    if (port === undefined) continue;
    for (const e of slice.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      const host = e.addresses[0];
      if (host === undefined) continue;
      const labels: Record<string, string> = {};
      if (e.nodeName !== undefined) labels['node'] = e.nodeName;
      if (e.targetRef?.kind === 'Pod' && e.targetRef.name !== undefined) labels['pod'] = e.targetRef.name;
      if (e.targetRef?.namespace !== undefined) labels['namespace'] = e.targetRef.namespace;
      const address = formatSocketAddress({ host, port });
      out.set(address, { address, host, port, zone: e.zone, weight: 1, labels, identity: undefined });
    }
  }
  return [...out.values()];
}
