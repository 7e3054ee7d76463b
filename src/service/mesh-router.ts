/**
 * Kubernetes mesh mode, outbound: which Service a pod's request is for, and
 * who the caller is. The Host names the Service as cluster DNS would; a short
 * name resolves in the caller's namespace, known from the caller's pod
 * address. A Service gets its runtime (balancer, feedback, pools) on its
 * first call, from the `kubernetes.mesh.service` template, and gives it back
 * after a quiet period. A name that is no Service of the cluster is refused
 * without building anything: one caller cannot make meshd watch or hold
 * state for names it invents.
 */
import type { MeshConfig, ServiceConfig } from '../config/types.ts';
import { MeshError } from '../errors.ts';
import type { HeldNamespaces } from '../discovery/held-namespaces.ts';
import type { ClusterView } from '../kubernetes/cluster-view.ts';
import { resolveServiceName, serviceLabel, type ServiceRef } from '../kubernetes/service-names.ts';
import type { Logger } from '../log.ts';
import { CALLER_IDENTITY_HEADER, CALLER_NAMESPACE_HEADER, CALLER_POD_HEADER, CALLER_SERVICE_ACCOUNT_HEADER } from '../protocol/fields.ts';
import type { MeshPolicies } from './mesh-policy.ts';
import type { ServiceRegistry } from './registry.ts';
import type { ServiceRuntime } from './runtime.ts';
import type { HttpRouteView } from '../kubernetes/http-routes.ts';
import { serviceRoutes } from '../kubernetes/gamma.ts';

export type RouteResult = ServiceRuntime | MeshError;

export interface MeshRouterDeps {
  readonly view: ClusterView;
  readonly namespaces: HeldNamespaces;
  readonly registry: ServiceRegistry;
  readonly policies: MeshPolicies;
  authorization(service: string, allowed: boolean): void;
  readonly log: Logger;
  /** Wall-clock milliseconds. */
  readonly now: () => number;
  /** The running config (it follows reloads). */
  config(): MeshConfig;
  /** HTTPRoutes attached to Services (GAMMA); undefined: not read. */
  readonly httpRoutes?: HttpRouteView | undefined;
}

/** A Service nobody called for this long gives its runtime back. */
export const IDLE_SERVICE_MS = 10 * 60_000;

export class MeshRouter {
  private readonly deps: MeshRouterDeps;
  private readonly lastUsed = new Map<string, number>();
  /** Each running Service's hold on its namespace's HTTPRoute watch, and its namespace. */
  private readonly routeHolds = new Map<string, { namespace: string; release: () => void }>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(deps: MeshRouterDeps) {
    this.deps = deps;
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  /** Static services (the config's `services`) first, then the cluster's Services. */
  route(host: string, remoteAddress: string | undefined): RouteResult | Promise<RouteResult> {
    const { registry, view } = this.deps;
    const configured = this.deps.config().services.has(host) ? registry.get(host) : undefined;
    if (configured !== undefined) return configured;
    const mesh = this.deps.config().kubernetes.mesh;
    if (mesh === undefined) return new MeshError('unknown_service', `no service named "${host}" is configured`);
    const caller = view.podByIp(remoteAddress);
    const ref = resolveServiceName(host, caller?.namespace, mesh.clusterDomain);
    if (ref instanceof MeshError) return ref;
    const label = serviceLabel(ref);
    if (mesh.authorization.has(label)) {
      // The destination's node decides; for a pod on this node that is this meshd, so every call is judged here first.
      const identity = caller === undefined ? undefined : view.workloadIdentity(caller);
      const verdict = this.deps.policies.verdict(mesh, label, identity);
      this.deps.authorization(label, verdict.allowed);
      if (!verdict.allowed) {
        this.deps.log.warn(
          { event: 'forbidden', service: label, identity, rule: verdict.rule },
          `refused ${identity ?? 'a caller that is no pod of this node'} for ${label}: ${verdict.rule}`,
        );
        return new MeshError('forbidden', `calls to "${label}" from this identity are not allowed`);
      }
    }
    const running = registry.get(label);
    if (running !== undefined) {
      this.lastUsed.set(label, this.deps.now());
      return running;
    }
    return this.start(ref, label);
  }

  /** The fields that tell the next hop which pod called (its node's meshd observed it by address); undefined for a caller that is no pod of this node. */
  callerFields(remoteAddress: string | undefined): readonly string[] | undefined {
    const caller = this.deps.view.podByIp(remoteAddress);
    if (caller === undefined) return undefined;
    return [
      CALLER_IDENTITY_HEADER,
      this.deps.view.workloadIdentity(caller),
      CALLER_NAMESPACE_HEADER,
      caller.namespace,
      CALLER_SERVICE_ACCOUNT_HEADER,
      caller.serviceAccount,
      CALLER_POD_HEADER,
      caller.name,
    ];
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  status(): unknown {
    return { services: this.deps.registry.onDemandNames(), heldNamespaces: this.deps.namespaces.names(), httpRoutes: this.deps.httpRoutes?.status() };
  }

  /** The HTTPRoutes of `namespace` changed: its running Services take their new routes. */
  routesChanged(namespace: string): void {
    for (const [label, hold] of this.routeHolds) {
      if (hold.namespace !== namespace) continue;
      this.deps.registry.refresh(label).catch((err: unknown) => this.deps.log.error({ err, service: label }, 'applying changed HTTPRoutes failed'));
    }
  }

  private async start(ref: ServiceRef, label: string): Promise<ServiceRuntime | MeshError> {
    const informer = await this.deps.namespaces.hold(ref.namespace);
    if (!informer.synced) {
      return new MeshError('no_endpoints', `the Kubernetes API has not listed the EndpointSlices of namespace "${ref.namespace}" yet`, {
        retryAfterSeconds: 1,
      });
    }
    if (informer.slicesOf(ref.name).length === 0) {
      return new MeshError('unknown_service', `no Service "${ref.name}" with endpoints in namespace "${ref.namespace}"`);
    }
    this.lastUsed.set(label, this.deps.now());
    const httpRoutes = this.deps.httpRoutes;
    if (httpRoutes !== undefined && !this.routeHolds.has(label)) {
      const release = await httpRoutes.hold(ref.namespace);
      if (this.routeHolds.has(label)) release();
      else this.routeHolds.set(label, { namespace: ref.namespace, release });
    }
    const runtime = await this.deps.registry.ensure(label, (config) => meshServiceConfig(config, ref, label, httpRoutes, this.deps.log));
    if (runtime === undefined) return new MeshError('unknown_service', `Kubernetes mesh mode is off; no service named "${label}"`);
    this.deps.log.info({ service: label }, 'mesh service started on its first call');
    return runtime;
  }

  /** Gives back the runtimes of Services nobody called for IDLE_SERVICE_MS. */
  private sweep(): void {
    const now = this.deps.now();
    for (const [label, at] of this.lastUsed) {
      if (now - at < IDLE_SERVICE_MS) continue;
      if (this.deps.registry.get(label)?.busy === true) continue;
      this.lastUsed.delete(label);
      this.deps.registry.remove(label);
      this.routeHolds.get(label)?.release();
      this.routeHolds.delete(label);
      this.deps.log.info({ service: label, idleMs: now - at }, 'idle mesh service stopped');
    }
  }
}

/**
 * A Service's config: the template's settings under the Service's label, its endpoints from the
 * cluster, and its routes from the HTTPRoutes attached to it (kubernetes/gamma.ts).
 */
export function meshServiceConfig(config: MeshConfig, ref: ServiceRef, label: string, httpRoutes?: HttpRouteView, log?: Logger): ServiceConfig | undefined {
  const mesh = config.kubernetes.mesh;
  if (mesh === undefined) return undefined;
  const template = mesh.service;
  const gamma = httpRoutes === undefined ? undefined : serviceRoutes(httpRoutes.routes(ref.namespace), ref.name, ref.namespace);
  if (gamma !== undefined && gamma.skipped.length > 0)
    log?.warn({ service: label, skipped: gamma.skipped }, 'HTTPRoute rules left out (unsupported or invalid)');
  return {
    ...template,
    name: label,
    routes: gamma?.rules ?? template.routes,
    discovery: { ...template.discovery, mesh: { service: ref.name, namespace: ref.namespace, backends: gamma?.backends ?? [] } },
  };
}
