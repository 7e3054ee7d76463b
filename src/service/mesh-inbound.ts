/**
 * Kubernetes mesh mode, inbound: another node's meshd asks this one to
 * deliver a request to a pod. Only a node's meshd (by its verified identity)
 * may ask; the pod must be a ready endpoint of the named Service on this very
 * node, by this meshd's own watches of the Service's EndpointSlices and of
 * its node's pods, else the request is refused as misdirected (421): the
 * inbound port is no relay into the pod network. The Service's policy
 * judges the calling pod's identity, which the sending meshd observed. The
 * app gets the sending node's identity and the calling pod's.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from '../clock.ts';
import { formatSocketAddress, parseSocketAddress, type SocketAddress } from '../config/address.ts';
import type { MeshConfig, ServiceConfig } from '../config/types.ts';
import type { HeldNamespaces } from '../discovery/held-namespaces.ts';
import { portProtocol, type SliceInformer, type SliceObject, type SliceSubscriber } from '../discovery/kubernetes-slices.ts';
import { MeshError } from '../errors.ts';
import type { DecisionRecorder } from '../feedback/controller.ts';
import type { ClusterView } from '../kubernetes/cluster-view.ts';
import { parseServiceLabel, serviceLabel, type ServiceRef } from '../kubernetes/service-names.ts';
import type { Logger } from '../log.ts';
import {
  CALLER_IDENTITY_HEADER,
  CALLER_NAMESPACE_HEADER,
  CALLER_POD_HEADER,
  CALLER_SERVICE_ACCOUNT_HEADER,
  MESH_SERVICE_HEADER,
  MESH_TARGET_HEADER,
  PEER_IDENTITY_HEADER,
} from '../protocol/fields.ts';
import type { DataPathObserver, EdgeRecorder } from '../stack/observer.ts';
import type { ExchangeWitnesses } from '../stack/trace.ts';
import { LocalService } from './local.ts';
import type { MeshPolicies } from './mesh-policy.ts';

/** Where an admitted request goes, and the fields the app gets. */
export interface Delivery {
  readonly service: string;
  readonly target: LocalService;
  readonly fields: readonly string[];
  /** The caller's verified identity (the peer's certificate; in mesh mode, the calling pod's workload identity as its node's meshd observed it). */
  readonly caller: string;
}

export interface MeshInboundDeps {
  readonly view: ClusterView;
  readonly namespaces: HeldNamespaces;
  readonly policies: MeshPolicies;
  readonly observer: DataPathObserver;
  readonly decisions: DecisionRecorder;
  readonly log: Logger;
  readonly clock: Clock;
  concurrencyLimit(service: string, limit: number): void;
  authorization(service: string, allowed: boolean): void;
  config(): MeshConfig;
  /** The dependency map and traces/access logs of what this node delivers. */
  readonly edges?: EdgeRecorder;
  readonly witnesses?: ExchangeWitnesses;
}

/** A pod target nobody was delivered to for this long closes its pool. */
const IDLE_TARGET_MS = 10 * 60_000;

export class MeshInbound {
  private readonly deps: MeshInboundDeps;
  /** One delivery stack (pool, limit, statistics) per pod target, made on first use. */
  private readonly targets = new Map<string, { target: LocalService; service: string; address: string; lastUsed: number }>();
  private readonly sweeper: NodeJS.Timeout;
  /** This node's ready endpoints of each Service delivered to, kept current by its namespace's informer. */
  private readonly indexes = new Map<string, IndexEntry>();

  constructor(deps: MeshInboundDeps) {
    this.deps = deps;
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  /** Whether a request asks for mesh delivery (it names a pod). */
  static asks(headers: IncomingHttpHeaders): boolean {
    return headers[MESH_TARGET_HEADER] !== undefined;
  }

  /** Checks a request from the verified peer `peer` and finds its pod, or says why not. */
  admit(headers: IncomingHttpHeaders, peer: string): Delivery | MeshError | Promise<Delivery | MeshError> {
    if (!this.deps.view.isPeerIdentity(peer)) {
      this.deps.log.warn({ event: 'forbidden', identity: peer }, `refused a pod delivery asked by ${peer}: not a node's meshd`);
      return new MeshError('forbidden', "only a node's meshd may ask for delivery to a pod");
    }
    const ref = parseServiceLabel(single(headers[MESH_SERVICE_HEADER]) ?? '');
    const target = parseSocketAddress(single(headers[MESH_TARGET_HEADER]) ?? '', { allowPortZero: false });
    if (ref === undefined || typeof target === 'string')
      return new MeshError('bad_request', `${MESH_SERVICE_HEADER} and ${MESH_TARGET_HEADER} must name NAME.NAMESPACE and IP:PORT`);
    const label = serviceLabel(ref);
    const known = this.indexes.get(label);
    if (known !== undefined) {
      known.lastUsed = this.deps.clock();
      return this.decide(ref, known.index, target, headers, peer);
    }
    return this.indexFor(ref, label).then((index) => this.decide(ref, index, target, headers, peer));
  }

  /** Starts following a Service's ready endpoints on this node; resolves once its namespace was listed. */
  private async indexFor(ref: ServiceRef, label: string): Promise<LocalEndpoints> {
    const informer = await this.deps.namespaces.hold(ref.namespace);
    const existing = this.indexes.get(label);
    if (existing !== undefined) return existing.index;
    const index = new LocalEndpoints(this.deps.view.nodeName);
    this.indexes.set(label, { index, informer, name: ref.name, lastUsed: this.deps.clock() });
    await informer.subscribe(ref.name, index);
    return index;
  }

  close(): Promise<unknown> {
    clearInterval(this.sweeper);
    for (const [label, entry] of this.indexes) this.forget(label, entry);
    const all = [...this.targets.values()];
    this.targets.clear();
    return Promise.allSettled(all.map((t) => t.target.close()));
  }

  status(): unknown {
    return [...this.targets.values()].map((t) => ({ service: t.service, pod: t.address, protocol: t.target.config.protocol }));
  }

  private decide(ref: ServiceRef, index: LocalEndpoints, target: SocketAddress, headers: IncomingHttpHeaders, peer: string): Delivery | MeshError {
    const { view, log } = this.deps;
    const service = serviceLabel(ref);
    if (!index.listed) return new MeshError('no_endpoints', `this node has not listed the endpoints of "${service}" yet`, { retryAfterSeconds: 1 });
    const address = formatSocketAddress(target);
    const port = index.port(address);
    const pod = view.podByIp(target.host);
    if (port === undefined || pod?.ready !== true || pod.namespace !== ref.namespace) {
      log.warn(
        { event: 'misdirected', service, target: address, node: view.nodeName, peer },
        'refused a delivery to a pod that is not a ready endpoint of the Service on this node',
      );
      return new MeshError('misdirected', `${address} is not a ready pod of "${service}" on node ${view.nodeName}`);
    }
    const mesh = this.deps.config().kubernetes.mesh;
    if (mesh === undefined) return new MeshError('unknown_service', 'Kubernetes mesh mode is off on this node');
    const caller = callerOf(headers, mesh.trustDomain);
    const verdict = this.deps.policies.verdict(mesh, service, caller?.[1]);
    this.deps.authorization(service, verdict.allowed);
    if (!verdict.allowed) {
      log.warn(
        { event: 'forbidden', service, identity: caller?.[1], node: peer, rule: verdict.rule },
        `refused ${caller?.[1] ?? 'an unknown caller'} for ${service}: ${verdict.rule}`,
      );
      return new MeshError('forbidden', `calls to "${service}" from this identity are not allowed`);
    }
    const protocol = portProtocol(port) ?? mesh.service.protocol;
    return {
      service,
      target: this.targetFor(service, target, address, protocol, mesh.service),
      fields: [PEER_IDENTITY_HEADER, peer, ...(caller ?? [])],
      caller: caller?.[1] ?? peer,
    };
  }

  private targetFor(service: string, target: SocketAddress, address: string, protocol: 'http1' | 'h2c', template: ServiceConfig): LocalService {
    const key = `${service}|${address}|${protocol}`;
    const now = this.deps.clock();
    const known = this.targets.get(key);
    if (known !== undefined) {
      known.lastUsed = now;
      return known.target;
    }
    const local = new LocalService(
      {
        name: service,
        target,
        allow: [],
        deny: [],
        tcp: false,
        protocol,
        timeoutMs: template.timeoutMs,
        concurrency: template.concurrency,
        access: [],
        rateLimit: undefined,
      },
      this.deps,
    );
    this.targets.set(key, { target: local, service, address, lastUsed: now });
    return local;
  }

  private forget(label: string, entry: IndexEntry): void {
    this.indexes.delete(label);
    entry.informer.unsubscribe(entry.name, entry.index);
  }

  private sweep(): void {
    const now = this.deps.clock();
    for (const [label, entry] of this.indexes) if (now - entry.lastUsed >= IDLE_TARGET_MS) this.forget(label, entry);
    for (const [key, t] of this.targets) {
      if (now - t.lastUsed < IDLE_TARGET_MS) continue;
      this.targets.delete(key);
      void t.target.close();
      this.deps.observer.removeEndpoint(`local:${t.service}`, t.address);
    }
  }
}

type SlicePort = NonNullable<SliceObject['ports']>[number];

interface IndexEntry {
  readonly index: LocalEndpoints;
  readonly informer: SliceInformer;
  readonly name: string;
  lastUsed: number;
}

/**
 * One Service's ready endpoints on this node ("ip:port" → its Service port), rebuilt when its
 * slices change, so that admitting a delivery is one lookup however many pods the Service has.
 */
class LocalEndpoints implements SliceSubscriber {
  listed = false;
  private readonly node: string;
  private byAddress = new Map<string, SlicePort>();

  constructor(node: string) {
    this.node = node;
  }

  port(address: string): SlicePort | undefined {
    return this.byAddress.get(address);
  }

  changed(slices: readonly SliceObject[]): void {
    const next = new Map<string, SlicePort>();
    for (const slice of slices) {
      for (const e of slice.endpoints ?? []) {
        if (e.conditions?.ready === false || e.nodeName !== this.node) continue;
        for (const host of e.addresses)
          for (const port of slice.ports ?? []) if (port.port !== undefined) next.set(formatSocketAddress({ host, port: port.port }), port);
      }
    }
    this.byAddress = next;
    this.listed = true;
  }

  /** The last known endpoints stay; a delivery is still checked against them. */
  failed(): void {}
}

/** The calling pod as the sending meshd named it: fields to pass on, identity second; undefined when absent or foreign to this trust domain. */
function callerOf(headers: IncomingHttpHeaders, trustDomain: string): string[] | undefined {
  const identity = single(headers[CALLER_IDENTITY_HEADER]);
  if (identity?.startsWith(`spiffe://${trustDomain}/ns/`) !== true) return undefined;
  const out = [CALLER_IDENTITY_HEADER, identity];
  for (const name of [CALLER_NAMESPACE_HEADER, CALLER_SERVICE_ACCOUNT_HEADER, CALLER_POD_HEADER]) {
    const value = single(headers[name]);
    if (value !== undefined) out.push(name, value);
  }
  return out;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? undefined : value;
}
