/**
 * Kubernetes mesh mode: one Service's pods as endpoints, from its namespace's
 * EndpointSlices. Each ready pod is balanced and watched on its own; a pod on
 * this node is called directly, a pod on another node through that node's
 * meshd (over mTLS, naming the pod), and a pod whose node has no ready meshd
 * is left out until it has one.
 */
import type { EndpointSpec } from '../config/types.ts';
import type { ClusterView } from '../kubernetes/cluster-view.ts';
import { PREFERRED_PORT_NAMES } from '../kubernetes/service-ports.ts';
import type { Logger } from '../log.ts';
import { portProtocol, type SliceInformer, type SliceInformers, type SliceObject, type SliceSubscriber } from './kubernetes-slices.ts';
import { endpointsOf } from './kubernetes-source.ts';
import type { DiscoverySource } from './source.ts';
import { SourceRecord, type UpdateResult } from './source-record.ts';

/** What a mesh Service's source needs from the process. */
export interface MeshDiscovery {
  readonly view: ClusterView;
  readonly informers: SliceInformers;
  readonly kubeconfig: string | undefined;
  readonly idleTimeoutMs: number;
  readonly inboundPort: number;
}

export interface MeshSourceDeps {
  readonly log: Logger;
  /** Wall-clock milliseconds. */
  readonly now: () => number;
  readonly mesh: MeshDiscovery;
  changed(): void;
  counted(result: UpdateResult): void;
}

export class MeshSource implements DiscoverySource, SliceSubscriber {
  readonly name: string;
  /** Added to every endpoint's labels (a backend Service's pods: `service.meshd.io/NAME`). */
  private readonly extraLabels: Readonly<Record<string, string>>;
  private readonly label: string;
  private readonly service: string;
  private readonly namespace: string;
  private readonly port: string | number | undefined;
  private readonly deps: MeshSourceDeps;
  private readonly record: SourceRecord;
  private readonly informer: SliceInformer;
  private slices: readonly SliceObject[] = [];
  private unsubscribePeers: (() => void) | undefined;
  private stopped = false;
  /** Pods left out because their node has no ready meshd, at the last publication. */
  private unreachable = 0;

  /**
   * `label` is the service as meshd names it ("users.shop", or a configured service's name); `port`
   * the EndpointSlice port by name or number (undefined: an HTTP one, else the first).
   */
  constructor(
    label: string,
    service: string,
    namespace: string,
    port: string | number | undefined,
    acceptEmptyAfterMs: number,
    deps: MeshSourceDeps,
    options: { readonly name?: string; readonly labels?: Readonly<Record<string, string>> } = {},
  ) {
    this.name = options.name ?? 'kubernetes';
    this.extraLabels = options.labels ?? {};
    this.label = label;
    this.service = service;
    this.namespace = namespace;
    this.port = port;
    this.deps = deps;
    this.record = new SourceRecord(acceptEmptyAfterMs, deps.now, (result) => deps.counted(result));
    this.informer = deps.mesh.informers.get(namespace, deps.mesh.kubeconfig, deps.mesh.idleTimeoutMs);
  }

  get endpoints(): readonly EndpointSpec[] {
    return this.record.endpoints;
  }

  async start(): Promise<void> {
    this.unsubscribePeers = this.deps.mesh.view.onPeersChanged(() => this.publish());
    await this.informer.subscribe(this.service, this);
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribePeers?.();
    this.informer.unsubscribe(this.service, this);
    this.deps.mesh.informers.release(this.informer);
  }

  status(): unknown {
    return {
      ...this.record.status(),
      service: this.label,
      unreachablePods: this.unreachable,
      ...this.informer.status(),
      staleSeconds: this.informer.staleSeconds(),
    };
  }

  changed(slices: readonly SliceObject[]): void {
    this.slices = slices;
    this.publish();
  }

  failed(reason: string): void {
    if (!this.stopped) this.record.fail(reason);
  }

  private publish(): void {
    if (this.stopped) return;
    const { view, inboundPort } = this.deps.mesh;
    const out: EndpointSpec[] = [];
    let unreachable = 0;
    const port = this.port ?? preferredPort(this.slices);
    const protocol = portProtocol(this.slices.flatMap((s) => s.ports ?? []).find((p) => port === undefined || p.name === port || p.port === port));
    for (const found of endpointsOf(this.slices, port)) {
      const e = { ...found, labels: { ...found.labels, ...this.extraLabels } };
      const node = e.labels['node'];
      if (node === undefined || node === view.nodeName) {
        out.push(protocol === undefined ? e : { ...e, protocol });
        continue;
      }
      const peer = view.peer(node);
      if (peer === undefined) {
        unreachable++;
        continue;
      }
      out.push({ ...e, via: { host: peer.host, port: inboundPort, identity: peer.identity, service: `${this.service}.${this.namespace}` } });
    }
    this.unreachable = unreachable;
    if (this.record.offer(out)) {
      this.deps.log.info({ service: this.label, source: this.name, endpoints: out.length, unreachablePods: unreachable }, 'mesh endpoints changed');
      this.deps.changed();
    }
  }
}

function preferredPort(slices: readonly SliceObject[]): string | number | undefined {
  const names = slices.flatMap((s) => (s.ports ?? []).map((p) => p.name));
  return PREFERRED_PORT_NAMES.find((p) => names.includes(p));
}
