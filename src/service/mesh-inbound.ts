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
import { portProtocol, type SliceObject } from '../discovery/kubernetes-slices.ts';
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
import type { DataPathObserver } from '../stack/observer.ts';
import { LocalService } from './local.ts';
import type { MeshPolicies } from './mesh-policy.ts';

/** Where an admitted request goes, and the fields the app gets. */
export interface Delivery {
  readonly service: string;
  readonly target: LocalService;
  readonly fields: readonly string[];
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
}

/** A pod target nobody was delivered to for this long closes its pool. */
const IDLE_TARGET_MS = 10 * 60_000;

export class MeshInbound {
  private readonly deps: MeshInboundDeps;
  /** One delivery stack (pool, limit, statistics) per pod target, made on first use. */
  private readonly targets = new Map<string, { target: LocalService; service: string; address: string; lastUsed: number }>();
  private readonly sweeper: NodeJS.Timeout;

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
    const { view, namespaces } = this.deps;
    if (!view.isPeerIdentity(peer)) {
      this.deps.log.warn({ event: 'forbidden', identity: peer }, `refused a pod delivery asked by ${peer}: not a node's meshd`);
      return new MeshError('forbidden', "only a node's meshd may ask for delivery to a pod");
    }
    const ref = parseServiceLabel(single(headers[MESH_SERVICE_HEADER]) ?? '');
    const target = parseSocketAddress(single(headers[MESH_TARGET_HEADER]) ?? '', { allowPortZero: false });
    if (ref === undefined || typeof target === 'string')
      return new MeshError('bad_request', `${MESH_SERVICE_HEADER} and ${MESH_TARGET_HEADER} must name NAME.NAMESPACE and IP:PORT`);
    const informer = namespaces.hold(ref.namespace);
    const decide = (slices: readonly SliceObject[] | undefined): Delivery | MeshError => this.decide(ref, slices, target, headers, peer);
    if (informer instanceof Promise) return informer.then((i) => decide(i.synced ? i.slicesOf(ref.name) : undefined));
    return decide(informer.synced ? informer.slicesOf(ref.name) : undefined);
  }

  close(): Promise<unknown> {
    clearInterval(this.sweeper);
    const all = [...this.targets.values()];
    this.targets.clear();
    return Promise.allSettled(all.map((t) => t.target.close()));
  }

  status(): unknown {
    return [...this.targets.values()].map((t) => ({ service: t.service, pod: t.address, protocol: t.target.config.protocol }));
  }

  private decide(
    ref: ServiceRef,
    slices: readonly SliceObject[] | undefined,
    target: SocketAddress,
    headers: IncomingHttpHeaders,
    peer: string,
  ): Delivery | MeshError {
    const { view, log } = this.deps;
    const service = serviceLabel(ref);
    if (slices === undefined) return new MeshError('no_endpoints', `this node has not listed the endpoints of "${service}" yet`, { retryAfterSeconds: 1 });
    const address = formatSocketAddress(target);
    const port = localEndpointPort(slices, target, view.nodeName);
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
    return { service, target: this.targetFor(service, target, address, protocol, mesh.service), fields: [PEER_IDENTITY_HEADER, peer, ...(caller ?? [])] };
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
      { name: service, target, allow: [], deny: [], tcp: false, protocol, timeoutMs: template.timeoutMs, concurrency: template.concurrency },
      this.deps,
    );
    this.targets.set(key, { target: local, service, address, lastUsed: now });
    return local;
  }

  private sweep(): void {
    const now = this.deps.clock();
    for (const [key, t] of this.targets) {
      if (now - t.lastUsed < IDLE_TARGET_MS) continue;
      this.targets.delete(key);
      void t.target.close();
      this.deps.observer.removeEndpoint(`local:${t.service}`, t.address);
    }
  }
}

type SlicePort = NonNullable<SliceObject['ports']>[number];

/** The Service port the target's address and port are a ready endpoint of, on `node`; undefined when it is none. */
function localEndpointPort(slices: readonly SliceObject[], target: SocketAddress, node: string): SlicePort | undefined {
  for (const slice of slices) {
    const port = slice.ports?.find((p) => p.port === target.port);
    if (port === undefined) continue;
    for (const e of slice.endpoints ?? []) {
      if (e.conditions?.ready === false || e.nodeName !== node) continue;
      if (e.addresses.includes(target.host)) return port;
    }
  }
  return undefined;
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
