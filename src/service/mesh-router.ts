/**
 * Kubernetes mesh mode, outbound: which Service a pod's request is for, and
 * who the caller is. The Host names the Service as cluster DNS would; a short
 * name resolves in the caller's namespace, known from the caller's pod
 * address; a port in the Host names one of the Service's ports
 * (kubernetes/service-ports.ts). A Service port gets its runtime (balancer,
 * feedback, pools) on its first call, from the `kubernetes.mesh.service`
 * template, and gives it back after a quiet period: `users.shop` for the
 * default port, `users.shop:9090` for another. A name that is no Service of
 * the cluster, or a port it lacks, is refused without building anything: one
 * caller cannot make meshd watch or hold state for names it invents.
 */
import type { MeshConfig, ServiceConfig } from '../config/types.ts';
import { MeshError } from '../errors.ts';
import type { HeldNamespaces } from '../discovery/held-namespaces.ts';
import type { ClusterView } from '../kubernetes/cluster-view.ts';
import { parseServiceLabel, resolveServiceName, serviceLabel, type ServiceRef } from '../kubernetes/service-names.ts';
import type { Logger } from '../log.ts';
import { CALLER_IDENTITY_HEADER, CALLER_NAMESPACE_HEADER, CALLER_POD_HEADER, CALLER_SERVICE_ACCOUNT_HEADER } from '../protocol/fields.ts';
import type { MeshPolicies } from './mesh-policy.ts';
import type { ServiceRegistry } from './registry.ts';
import type { ServiceRuntime } from './runtime.ts';
import type { HttpRouteView } from '../kubernetes/http-routes.ts';
import { serviceRoutes, type BackendPortName } from '../kubernetes/gamma.ts';
import type { NamespacedObjects } from '../kubernetes/namespaced-objects.ts';
import { chooseServicePort, defaultServicePort, type ChosenPort, type ServiceObject } from '../kubernetes/service-ports.ts';

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
  /** The Services themselves: their ports. */
  readonly services: NamespacedObjects<ServiceObject>;
}

/** What a running Service port holds: its namespace's HTTPRoute and Service watches. */
interface Holds {
  readonly ref: ServiceRef;
  /** The Service port asked for; undefined for the default runtime. */
  readonly port: number | undefined;
  readonly release: () => void;
}

/** A Service nobody called for this long gives its runtime back. */
export const IDLE_SERVICE_MS = 10 * 60_000;
/** How long a call naming a port the Service lacks keeps its namespace's watches. */
const REFUSED_PORT_HOLD_MS = 60_000;

export class MeshRouter {
  private readonly deps: MeshRouterDeps;
  private readonly lastUsed = new Map<string, number>();
  /** Each running Service port's holds on its namespace's watches, by runtime label. */
  private readonly holds = new Map<string, Holds>();
  /** "users.shop:80" → "users.shop" when port 80 is the Service's default: one runtime per port, however it is named. */
  private readonly aliases = new Map<string, string>();
  /** Namespaces kept watched after a refused port, until their timer fires. */
  private readonly lingering = new Map<string, NodeJS.Timeout>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(deps: MeshRouterDeps) {
    this.deps = deps;
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  /** Static services (the config's `services`) first, then the cluster's Services; `port` is the Host's. */
  route(host: string, port: number | undefined, remoteAddress: string | undefined): RouteResult | Promise<RouteResult> {
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
    // The port of meshd's own listener is how the caller reached meshd, not a port of the Service.
    const servicePort = port === undefined || port === this.deps.config().outbound.listen.port ? undefined : port;
    const asked = servicePort === undefined ? label : `${label}:${String(servicePort)}`;
    const runtimeLabel = this.aliases.get(asked) ?? asked;
    const running = registry.get(runtimeLabel);
    if (running !== undefined) {
      this.lastUsed.set(runtimeLabel, this.deps.now());
      return running;
    }
    return this.start(ref, label, servicePort);
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
    for (const timer of this.lingering.values()) clearTimeout(timer);
    this.lingering.clear();
  }

  status(): unknown {
    return {
      services: this.deps.registry.onDemandNames(),
      heldNamespaces: this.deps.namespaces.names(),
      httpRoutes: this.deps.httpRoutes?.status(),
      serviceObjects: this.deps.services.status(),
    };
  }

  /** The HTTPRoutes or Services of `namespace` changed: its running Service ports take their new routes and ports. */
  namespaceChanged(namespace: string): void {
    // An alias always names a default runtime, whose label is the Service's plain one.
    for (const [asked, actual] of this.aliases) if (parseServiceLabel(actual)?.namespace === namespace) this.aliases.delete(asked);
    for (const [label, hold] of this.holds) {
      if (hold.ref.namespace !== namespace) continue;
      const chosen = hold.port === undefined ? undefined : this.choosePort(hold.ref, serviceLabel(hold.ref), hold.port);
      if (chosen instanceof MeshError || chosen?.isDefault === true) {
        // The port is gone, or is the default now: the next call finds its runtime afresh.
        this.stopRuntime(label, 'Service port changed');
        continue;
      }
      this.deps.registry.refresh(label).catch((err: unknown) => this.deps.log.error({ err, service: label }, 'applying changed HTTPRoutes or ports failed'));
    }
  }

  private choosePort(ref: ServiceRef, label: string, port: number): ChosenPort | MeshError {
    const { services } = this.deps;
    return chooseServicePort(services.get(ref.namespace, ref.name), label, port, services.problem(ref.namespace));
  }

  private async start(ref: ServiceRef, serviceLabelText: string, port: number | undefined): Promise<ServiceRuntime | MeshError> {
    const label = port === undefined ? serviceLabelText : `${serviceLabelText}:${String(port)}`;
    const informer = await this.deps.namespaces.hold(ref.namespace);
    if (!informer.synced) {
      return new MeshError('no_endpoints', `the Kubernetes API has not listed the EndpointSlices of namespace "${ref.namespace}" yet`, {
        retryAfterSeconds: 1,
      });
    }
    if (informer.slicesOf(ref.name).length === 0) {
      return new MeshError('unknown_service', `no Service "${ref.name}" with endpoints in namespace "${ref.namespace}"`);
    }
    const release = await this.hold(ref.namespace);
    const chosen = port === undefined ? undefined : this.choosePort(ref, serviceLabelText, port);
    if (chosen instanceof MeshError) {
      this.linger(ref.namespace, release);
      return chosen;
    }
    if (chosen?.isDefault === true) {
      // `users.shop:80` where 80 is the default port: the same runtime as `users.shop`.
      this.aliases.set(label, serviceLabelText);
      const runtime = await this.start(ref, serviceLabelText, undefined);
      release();
      return runtime;
    }
    if (this.holds.has(label)) release();
    else this.holds.set(label, { ref, port, release });
    this.lastUsed.set(label, this.deps.now());
    const { httpRoutes, services, log } = this.deps;
    const runtime = await this.deps.registry.ensure(label, (config) => {
      // A refresh reads the Service again: a renamed port follows.
      const now = port === undefined ? undefined : this.choosePort(ref, serviceLabelText, port);
      if (now instanceof MeshError) return undefined;
      const servicePort = now?.port ?? defaultServicePort(services.get(ref.namespace, ref.name)?.spec?.ports ?? [])?.port;
      const portNameOf: BackendPortName = (backend, backendPort) => {
        const chosen = chooseServicePort(services.get(ref.namespace, backend), `${backend}.${ref.namespace}`, backendPort, undefined);
        // A backend whose Service is not known (yet) takes its default port, as before Services were read.
        if (chosen instanceof MeshError) return services.get(ref.namespace, backend) === undefined ? { name: undefined } : chosen.message;
        return { name: chosen.isDefault ? undefined : chosen.name };
      };
      return meshServiceConfig(config, ref, label, { httpRoutes, log, port: now?.name, servicePort, portNameOf });
    });
    if (runtime === undefined) return new MeshError('unknown_service', `Kubernetes mesh mode is off; no service named "${label}"`);
    this.deps.log.info({ service: label }, 'mesh service started on its first call');
    return runtime;
  }

  /** Holds the namespace's HTTPRoute and Service watches (each resolves once listed, bounded); returns the release of both. */
  private async hold(namespace: string): Promise<() => void> {
    const [routes, services] = await Promise.all([this.deps.httpRoutes?.hold(namespace), this.deps.services.hold(namespace)]);
    return () => {
      routes?.();
      services();
    };
  }

  /**
   * Keeps a namespace's watches a while after a refused port (one hold per namespace, whatever the
   * number of refusals): a caller repeating a wrong port costs the API server no list each time.
   */
  private linger(namespace: string, release: () => void): void {
    if (this.lingering.has(namespace)) {
      release();
      return;
    }
    const timer = setTimeout(() => {
      this.lingering.delete(namespace);
      release();
    }, REFUSED_PORT_HOLD_MS);
    timer.unref();
    this.lingering.set(namespace, timer);
  }

  private stopRuntime(label: string, why: string): void {
    this.lastUsed.delete(label);
    this.deps.registry.remove(label);
    this.holds.get(label)?.release();
    this.holds.delete(label);
    for (const [asked, actual] of this.aliases) if (actual === label) this.aliases.delete(asked);
    this.deps.log.info({ service: label, why }, 'mesh service stopped');
  }

  /** Gives back the runtimes of Services nobody called for IDLE_SERVICE_MS. */
  private sweep(): void {
    const now = this.deps.now();
    for (const [label, at] of this.lastUsed) {
      if (now - at < IDLE_SERVICE_MS) continue;
      if (this.deps.registry.get(label)?.busy === true) continue;
      this.stopRuntime(label, `idle for ${String(Math.round((now - at) / 1000))} s`);
    }
  }
}

/** Where a Service port's config comes from besides the template. */
export interface MeshServiceSources {
  readonly httpRoutes?: HttpRouteView | undefined;
  readonly log?: Logger | undefined;
  /** The EndpointSlice port by name; undefined: the default. */
  readonly port?: string | undefined;
  /** The Service port's number, which HTTPRoutes name in `parentRefs[].port`; undefined when the Service is not known. */
  readonly servicePort?: number | undefined;
  /** Reads backendRef ports; undefined: every backend on its default port. */
  readonly portNameOf?: BackendPortName | undefined;
}

/**
 * A Service port's config: the template's settings under its label, its endpoints from the
 * cluster, and its routes from the HTTPRoutes attached to it (kubernetes/gamma.ts).
 */
export function meshServiceConfig(config: MeshConfig, ref: ServiceRef, label: string, sources: MeshServiceSources = {}): ServiceConfig | undefined {
  const mesh = config.kubernetes.mesh;
  if (mesh === undefined) return undefined;
  const template = mesh.service;
  const { httpRoutes, log, port, servicePort, portNameOf } = sources;
  const gamma =
    httpRoutes === undefined
      ? undefined
      : serviceRoutes(httpRoutes.all(ref.namespace), { service: ref.name, namespace: ref.namespace, servicePort, portName: port, portNameOf });
  if (gamma !== undefined && gamma.skipped.length > 0)
    log?.warn({ service: label, skipped: gamma.skipped }, 'HTTPRoute rules left out (unsupported or invalid)');
  return {
    ...template,
    name: label,
    routes: gamma?.rules ?? template.routes,
    discovery: { ...template.discovery, mesh: { service: ref.name, namespace: ref.namespace, port, backends: gamma?.backends ?? [] } },
  };
}
