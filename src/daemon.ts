/**
 * The running daemon: wires config, services, listeners and admin together,
 * applies reloads atomically, and drains on shutdown. Process concerns
 * (signals, systemd, exit codes) live in cli/run.ts, not here.
 */
import type { AddressInfo } from 'node:net';
import { AdminServer, type Readiness } from './admin/server.ts';
import { Metrics, UNKNOWN_SERVICE_LABEL } from './admin/metrics.ts';
import type { Clock, Random } from './clock.ts';
import { formatSocketAddress, type SocketAddress } from './config/address.ts';
import type { MeshConfig } from './config/types.ts';
import { autoConnectionCap, openFileLimit } from './listeners/connection-cap.ts';
import { OutboundHttpListener } from './listeners/outbound-http.ts';
import type { Logger } from './log.ts';
import { UpgradeForwarder } from './proxy/upgrade-forwarder.ts';
import { ServiceRegistry } from './service/registry.ts';
import type { Sample } from './feedback/remote.ts';
import type { AvailabilityUpdate } from './feedback/loop.ts';
import { singleProcess, type HandedListener, type ProcessRole, type WorkerView } from './service/process-role.ts';
import type { Socket } from 'node:net';
import { InboundListener } from './listeners/inbound.ts';
import { LocalService } from './service/local.ts';
import { expandAllowFrom, nodePodCidrs } from './kubernetes/node-pod-cidrs.ts';
import { sourceFilter, SourceFilter } from './listeners/source-filter.ts';
import { ServiceTcpListeners } from './listeners/service-tcp.ts';
import { SliceInformers } from './discovery/kubernetes-slices.ts';
import { MeshTlsClient } from './tls/client.ts';
import type { TlsState } from './tls/tls-state.ts';
import type { KubernetesMeshConfig } from './config/types.ts';
import { HeldNamespaces } from './discovery/held-namespaces.ts';
import type { MeshDiscovery } from './discovery/mesh-source.ts';
import { MeshError } from './errors.ts';
import { ClusterView } from './kubernetes/cluster-view.ts';
import { MeshInbound } from './service/mesh-inbound.ts';
import { MeshPolicies } from './service/mesh-policy.ts';
import { MeshRouter } from './service/mesh-router.ts';
import { FaultRegistry, type FaultTransfer } from './traffic/faults.ts';
import { HTTP_ROUTES, type HttpRouteView } from './kubernetes/http-routes.ts';
import type { HttpRouteObject } from './kubernetes/gamma.ts';
import { NamespacedObjects } from './kubernetes/namespaced-objects.ts';
import { SERVICES, type ServiceObject } from './kubernetes/service-ports.ts';
import { TrafficGraph, type RawEdge } from './admin/traffic-graph.ts';
import type { ExchangeWitnesses } from './stack/trace.ts';
import type { OtelHopTracer } from './tracing/otel-tracer.ts';
import { tracingSettings } from './tracing/settings.ts';
import type { ChangeAnswer, ChangeTarget } from './admin/changes.ts';
import type { FaultSpec } from './config/types.ts';
import type { CanaryCommand } from './canary/canary-state.ts';
import { CanaryStore } from './canary/canary-store.ts';

/**
 * How long a draining meshd keeps idle connections open for requests already on their way. On one
 * host a request a caller sent before it saw the drain arrives within milliseconds; a second covers
 * a loaded machine and is short against a restart.
 */
const DRAIN_GRACE_MS = 1_000;
/** How long a draining meshd waits for its last spans to be exported. */
const TRACE_FLUSH_ON_EXIT_MS = 2_000;

const CANARY_COMMANDS: readonly CanaryCommand[] = ['pause', 'resume', 'promote', 'rollback', 'restart'];
import { callerIdentityIn } from './protocol/fields.ts';

export interface DaemonDeps {
  readonly log: Logger;
  readonly clock: Clock;
  readonly random: Random;
  /** This host's TLS material, loaded (and watched) by the caller; undefined without `tls`. */
  readonly tls?: TlsState | undefined;
  /** Listening sockets inherited from systemd or a previous meshd, by name (outbound, inbound, admin, metrics). */
  readonly inheritedFds?: ReadonlyMap<string, number>;
  /** What this process does (service/process-role.ts); default: everything. */
  readonly role?: ProcessRole | undefined;
  /** Supervisor: admin faults or a canary's weight changed; its workers must follow (trafficState()). */
  readonly trafficChanged?: (() => void) | undefined;
  /** Worker: the supervisor's traffic state when it started this worker, applied before anything binds. */
  readonly initialTraffic?: TrafficState | undefined;
}

/** What the supervisor decides for its workers beyond endpoint availability. */
export interface TrafficState {
  readonly faults: readonly FaultTransfer[];
  readonly canaries: readonly { readonly service: string; readonly weight: number; readonly phase: string }[];
}

export interface BoundAddresses {
  outbound: string;
  admin: string;
  inbound?: string;
  /** The scrape listener, when `metrics` is configured. */
  metrics?: string;
}

export class Daemon implements ChangeTarget {
  private config: MeshConfig;
  private readonly deps: DaemonDeps;
  readonly metrics = new Metrics();
  private readonly services: ServiceRegistry;
  private readonly upgrades = new UpgradeForwarder();
  /** Fault injections in force (config and admin API), for every service. */
  readonly faults: FaultRegistry;
  /** The dependency map of the traffic this process carried. */
  readonly graph = new TrafficGraph(() => performance.now());
  /** OpenTelemetry hop spans, when `tracing.enabled` (the SDK is loaded only then). */
  private tracer: OtelHopTracer | undefined;
  private tracerKey: string | undefined;
  /** Traces and access logs, read by every stack per exchange (they follow reloads). */
  private readonly witnesses: ExchangeWitnesses;
  private readonly canaryStore: CanaryStore | undefined;
  private readonly inbound: InboundListener | undefined;
  private readonly local = new Map<string, LocalService>();
  private readonly outbound: OutboundHttpListener;
  private readonly admin: AdminServer;
  /** The scrape listener (GET /metrics only), when `metrics` is configured. */
  private readonly scrape: AdminServer | undefined;
  private readonly role: ProcessRole;
  private readonly tcp: ServiceTcpListeners;
  private readonly mesh: MeshParts | undefined;
  private readonly router: MeshRouter | undefined;
  private bound: BoundAddresses | undefined;
  private draining = false;
  private readonly startedAt = new Date();
  private lastReload: { at: string; result: 'success' | 'failure'; problems?: string[] } | undefined;
  readonly outboundConnectionCap: number;

  constructor(config: MeshConfig, deps: DaemonDeps) {
    this.config = config;
    this.deps = deps;
    const metrics = this.metrics;
    const role = deps.role ?? singleProcess;
    this.role = role;
    this.faults = new FaultRegistry(deps.clock, deps.random);
    // Only the process that decides canaries keeps them (workers follow the supervisor).
    this.canaryStore = role.decidesFeedback ? new CanaryStore(config.stateDir, deps.log) : undefined;
    this.witnesses = {
      tracer: () => this.tracer,
      accessLog: () => (this.config.log.access.enabled ? this.config.log.access : undefined),
      log: deps.log,
      random: deps.random,
    };
    const informers = new SliceInformers({ log: deps.log, random: deps.random, now: () => Date.now() });
    this.mesh = config.kubernetes.mesh === undefined ? undefined : this.buildMesh(config, informers);
    this.services = new ServiceRegistry({
      observer: metrics,
      log: deps.log,
      clock: deps.clock,
      random: deps.random,
      upgrades: this.upgrades,
      tls: deps.tls === undefined ? undefined : new MeshTlsClient(deps.tls),
      decisions: metrics,
      feedbackTickMs: 250,
      concurrencyLimit: (service, limit) => metrics.concurrencyLimit(service, limit),
      discoveryUpdate: (service, source, result) => metrics.discoveryUpdate(service, source, result),
      role,
      informers,
      mesh: this.mesh?.discovery,
      faults: this.faults,
      traffic: metrics,
      edges: this.graph,
      witnesses: this.witnesses,
      canaryMoved: () => deps.trafficChanged?.(),
      canaryStore: this.canaryStore,
    });
    const mesh = this.mesh;
    this.router =
      mesh === undefined
        ? undefined
        : new MeshRouter({
            view: mesh.view,
            namespaces: mesh.namespaces,
            registry: this.services,
            policies: mesh.policies,
            authorization: (service, allowed) => metrics.authorization(service, allowed),
            log: deps.log,
            now: () => Date.now(),
            config: () => this.config,
            httpRoutes: mesh.httpRoutes,
            services: mesh.services,
          });
    metrics.setEndpointCountSource(() => this.services.endpointCounts());
    metrics.setAttemptCountSource(() => this.services.attemptCounts());
    metrics.setDiscoveryStalenessSource(() => this.services.discoveryStaleness());
    this.tcp = new ServiceTcpListeners({
      log: deps.log,
      connection: (service, socket) => {
        const runtime = this.services.get(service);
        const callerFields = this.router?.callerFields(socket.remoteAddress);
        runtime?.relayTcp(socket, callerFields, callerIdentityIn(callerFields));
        return runtime !== undefined;
      },
      refused: (service, remote) => this.services.get(service)?.tcpRefused(remote),
      sourceFilter: (ranges) => this.sourceFilter(ranges),
      sharesPorts: role.sharesPorts,
    });
    const tls = deps.tls;
    if (tls !== undefined) {
      metrics.setCertificateSource(() => ({ identity: tls.current.identity, notAfter: tls.current.notAfter }));
      tls.onRotation((ok) => metrics.tlsRotation(ok));
    }
    this.buildLocal(config);
    if (config.inbound !== undefined && tls !== undefined && role.carriesTraffic) {
      this.inbound = new InboundListener(tls, config.inbound, {
        local: (name) => this.local.get(name),
        handshakeError: (reason) => metrics.handshakeError('inbound', reason),
        handshake: (resumed) => metrics.handshake('inbound', resumed),
        // Labelled as the local service's requests are (local:NAME), so the two join.
        authorization: (service, allowed) => metrics.authorization(`local:${service}`, allowed),
        upgrades: this.upgrades,
        log: deps.log,
        clock: deps.clock,
        witnesses: this.witnesses,
        mesh:
          mesh === undefined
            ? undefined
            : new MeshInbound({
                view: mesh.view,
                namespaces: mesh.namespaces,
                policies: mesh.policies,
                observer: metrics,
                decisions: metrics,
                log: deps.log,
                clock: deps.clock,
                concurrencyLimit: (service, limit) => metrics.concurrencyLimit(service, limit),
                authorization: (service, allowed) => metrics.authorization(`local:${service}`, allowed),
                config: () => this.config,
                edges: this.graph,
                witnesses: this.witnesses,
              }),
      });
    }
    const router = this.router;
    const cap = config.outbound.maxConnections;
    this.outboundConnectionCap = cap === 'auto' ? autoConnectionCap(openFileLimit()) : cap;
    this.outbound = new OutboundHttpListener(config.outbound, this.outboundConnectionCap, {
      route: router === undefined ? (name) => this.services.get(name) ?? unknownService(name) : (name, port, remote) => router.route(name, port, remote),
      callerFields: router === undefined ? () => undefined : (remote) => router.callerFields(remote),
      unknownService: metrics.forService(UNKNOWN_SERVICE_LABEL),
      clientError: (listener, code) => metrics.clientError(listener, code),
      connectionRefused: (listener) => metrics.connectionRefused(listener),
      log: deps.log,
      clock: deps.clock,
      maxInFlight: () => this.config.limits.maxInFlight,
      inFlight: () => this.inFlight,
      witnesses: this.witnesses,
    });
    const adminSources = {
      metrics: () => (role.workers === undefined ? metrics.render() : this.clusterMetrics(role.workers)),
      readiness: () => this.readiness(),
      state: () => (role.workers === undefined ? this.state() : this.clusterState(role.workers)),
      changes: this,
      graph: () => (role.workers === undefined ? this.graph : this.clusterGraph(role.workers)),
    };
    const allowHosts = (): readonly string[] => this.config.admin.allowHosts;
    const { maxConnections } = config.admin;
    this.admin = new AdminServer(adminSources, { scope: 'admin', maxConnections, allowHosts, log: deps.log, changesFrom: () => this.changesFrom() });
    this.scrape =
      config.metrics === undefined || !role.servesAdmin
        ? undefined
        : new AdminServer(adminSources, {
            scope: 'metrics',
            maxConnections,
            allowHosts,
            log: deps.log,
            sourceRefused: () => metrics.connectionRefused('metrics_source'),
          });
    // Closed to everyone until start() has resolved the list (node-pod-cidrs needs the API).
    if (this.scrape !== undefined && config.metrics?.allowFrom !== undefined) this.scrape.allowFrom = new SourceFilter([]);
  }

  private changesFromCache: { key: readonly string[] | undefined; filter: SourceFilter | undefined } | undefined;

  /** Who besides loopback may change things, following reloads. */
  private changesFrom(): SourceFilter | undefined {
    const key = this.config.admin.allowChangesFrom;
    if (this.changesFromCache === undefined || this.changesFromCache.key !== key) this.changesFromCache = { key, filter: sourceFilter(key) };
    return this.changesFromCache.filter;
  }

  // The admin API's changes (admin/changes.ts).

  addFault(service: string, fault: FaultSpec): ChangeAnswer {
    const refused = this.changesRefused(service);
    if (refused !== undefined) return refused;
    const view = this.faults.add(service, fault);
    this.deps.trafficChanged?.();
    this.deps.log.warn({ event: 'fault_injection', action: 'add', ...view }, `fault "${fault.name}" injected into ${service} for ${view.expiresInSeconds}s`);
    return { status: 201, body: view };
  }

  removeFault(service: string, name: string): ChangeAnswer {
    if (!this.faults.remove(service, name))
      return { status: 404, body: { error: 'not_found', message: `no fault "${name}" added to "${service}" through the admin API` } };
    this.deps.log.warn({ event: 'fault_injection', action: 'remove', service, name }, `fault "${name}" removed from ${service}`);
    return { status: 200, body: { removed: name, service } };
  }

  listFaults(): ChangeAnswer {
    return { status: 200, body: { faults: this.faults.list() } };
  }

  canary(service: string, command: string): ChangeAnswer {
    const refused = this.changesRefused(service);
    if (refused !== undefined) return refused;
    if (!(CANARY_COMMANDS as readonly string[]).includes(command)) {
      return { status: 400, body: { error: 'bad_request', message: `unknown command "${command}": use ${CANARY_COMMANDS.join(', ')}` } };
    }
    const decision = this.services.get(service)?.canaryCommand(command as CanaryCommand);
    if (decision === undefined) return { status: 404, body: { error: 'not_found', message: `service "${service}" has no canary` } };
    this.deps.log.warn({ event: 'canary_command', service, command, decision }, `canary of ${service}: operator sent ${command}`);
    return { status: decision.action === 'hold' ? 409 : 200, body: decision };
  }

  /**
   * Starts, replaces or stops the tracer to match the config and the OTEL_* variables. Only the
   * processes that carry traffic trace; the SDK is loaded on first use.
   */
  private async syncTracing(): Promise<void> {
    const settings = tracingSettings(this.config.tracing, process.env);
    const key = settings.enabled && this.role.carriesTraffic ? JSON.stringify(settings) : undefined;
    if (key === this.tracerKey) return;
    const previous = this.tracer;
    this.tracer = undefined;
    this.tracerKey = key;
    if (key !== undefined) {
      const { OtelHopTracer } = await import('./tracing/otel-tracer.ts');
      this.tracer = new OtelHopTracer(settings, this.config.node.name, this.deps.log, this.metrics);
      this.deps.log.info({ sampleRatio: settings.sampleRatio, endpoint: settings.endpoint ?? '(OTEL_EXPORTER_OTLP_* or localhost:4318)' }, 'tracing on');
    }
    await previous?.close();
  }

  /** The supervisor's map: every worker's edges merged. */
  private async clusterGraph(workers: WorkerView): Promise<TrafficGraph> {
    const merged = new TrafficGraph(() => performance.now());
    for (const answer of await workers.query('graph')) if (Array.isArray(answer)) merged.absorb(answer as RawEdge[]);
    return merged;
  }

  /** Supervisor: what its workers must follow (admin faults with their time left, canary weights). */
  trafficState(): TrafficState {
    return { faults: this.faults.adminFaults(), canaries: this.services.canaryDecisions() };
  }

  /** Worker: follows the supervisor's admin faults and canary weights. */
  applyTrafficState(state: TrafficState): void {
    this.faults.replaceAdminFaults(state.faults);
    for (const c of state.canaries) this.services.get(c.service)?.followCanary(c.weight, c.phase);
  }

  /** A change for a service that does not run here. */
  private changesRefused(service: string): ChangeAnswer | undefined {
    if (this.services.get(service) === undefined)
      return { status: 404, body: { error: 'unknown_service', message: `no service named "${service}" is running` } };
    return undefined;
  }

  /** Kubernetes mesh mode: what this node's meshd knows of the cluster (kubernetes/cluster-view.ts). */
  private buildMesh(config: MeshConfig, informers: SliceInformers): MeshParts {
    const settings = config.kubernetes.mesh as KubernetesMeshConfig;
    const nodeName = config.kubernetes.nodeName ?? process.env['NODE_NAME'];
    if (nodeName === undefined || nodeName === '') {
      throw new Error('Kubernetes mesh mode needs the node name: set kubernetes.nodeName or NODE_NAME (the downward API spec.nodeName)');
    }
    const kubeconfig = config.kubernetes.kubeconfig;
    const listWatch = { log: this.deps.log, random: this.deps.random, now: () => Date.now() };
    const view = new ClusterView({ nodeName, kubeconfig, mesh: settings }, listWatch);
    const objects = {
      ...listWatch,
      kubeconfig,
      idleTimeoutMs: settings.idleTimeoutMs,
      changed: (namespace: string) => this.router?.namespaceChanged(namespace),
    };
    const httpRoutes = settings.httpRoutes ? new NamespacedObjects<HttpRouteObject>(HTTP_ROUTES, objects) : undefined;
    return {
      view,
      httpRoutes,
      services: new NamespacedObjects<ServiceObject>(SERVICES, objects),
      namespaces: new HeldNamespaces(informers, { kubeconfig, idleTimeoutMs: settings.idleTimeoutMs, max: 256 }),
      policies: new MeshPolicies(),
      discovery: { view, informers, kubeconfig, idleTimeoutMs: settings.idleTimeoutMs, inboundPort: settings.inboundPort },
    };
  }

  /** This node's pod ranges, read from the Kubernetes API once, when an allowFrom list names them. */
  private nodeCidrs: Promise<string[]> | undefined;

  private async sourceFilter(ranges: readonly string[] | undefined): Promise<SourceFilter | undefined> {
    const read = (): Promise<string[]> =>
      (this.nodeCidrs ??= nodePodCidrs(this.config.kubernetes, process.env).then(
        (cidrs) => {
          this.deps.log.info(
            { node: this.config.kubernetes.nodeName ?? process.env['NODE_NAME'], podCidrs: cidrs },
            'node pod ranges read from the Kubernetes API',
          );
          return cidrs;
        },
        (err: unknown) => {
          this.nodeCidrs = undefined; // the next start or reload asks again
          throw err;
        },
      ));
    return sourceFilter(await expandAllowFrom(ranges, read));
  }

  /** Starts discovery, then binds admin and outbound. Rejects (nothing left bound) if a bind fails. */
  async start(): Promise<BoundAddresses> {
    // Before anything binds: a listener that leaves loopback admits only its ranges.
    const role = this.role;
    if (role.carriesTraffic) this.outbound.allowFrom = await this.sourceFilter(this.config.outbound.allowFrom);
    if (this.mesh !== undefined) {
      // Callers and peers are told apart by these lists: wait for their first answers, but not for an
      // API server that hangs (readiness stays false until they are listed).
      let timer: NodeJS.Timeout | undefined;
      const listed = await Promise.race([
        this.mesh.view.start().then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), CLUSTER_VIEW_WAIT_MS))),
      ]);
      clearTimeout(timer);
      if (listed && this.mesh.view.synced) this.deps.log.info({ mesh: this.mesh.view.status() }, 'Kubernetes mesh mode: cluster view listed');
      else this.deps.log.warn({ mesh: this.mesh.view.status() }, 'Kubernetes mesh mode: the cluster view is not listed yet; not ready until it is');
    }
    await this.syncTracing();
    await this.services.apply(this.config);
    // A worker takes the supervisor's canary weights and admin faults before its first request
    // (a restarted supervisor may have restored a rollback: the first step's weight would be wrong).
    if (this.deps.initialTraffic !== undefined) this.applyTrafficState(this.deps.initialTraffic);
    if (role.carriesTraffic) await this.tcp.sync(this.config.services, true);
    if (!role.carriesTraffic) {
      this.bound = { ...(await this.listenAdmin()), outbound: '' };
      this.logAdminListening();
      return this.bound;
    }
    try {
      const fds = this.deps.inheritedFds;
      const { outbound: outboundAt } = this.config;
      const admin = role.servesAdmin ? await this.listenAdmin() : { admin: '' };
      const outbound = role.handedOver('outbound')
        ? HANDED_OVER
        : formatAddress(
            await this.outbound.listen(outboundAt.listen.host, role.port('outbound', outboundAt.listen.port), fds?.get('outbound'), role.sharesPorts),
          );
      this.bound = { ...admin, outbound };
      if (this.inbound !== undefined && this.config.inbound !== undefined) {
        const { host, port } = this.config.inbound.listen;
        this.bound.inbound = role.handedOver('inbound')
          ? HANDED_OVER
          : formatAddress(await this.inbound.listen(host, role.port('inbound', port), fds?.get('inbound'), role.sharesPorts));
        this.deps.log.info(
          { listener: 'inbound', address: this.bound.inbound, identity: this.deps.tls?.current.identity, local: [...this.local.keys()] },
          'listening',
        );
      }
    } catch (err) {
      this.closeAdmin();
      this.outbound.closeAll();
      this.outbound.acceptor.close();
      this.inbound?.closeAll();
      this.inbound?.server.close();
      this.tcp.destroyAll();
      this.stopMesh();
      await this.services.close();
      throw err;
    }
    this.deps.log.info(
      { listener: 'outbound', address: this.bound.outbound, maxConnections: this.outboundConnectionCap, services: [...this.config.services.keys()] },
      'listening',
    );
    if (role.servesAdmin) this.logAdminListening();
    return this.bound;
  }

  /** Binds the admin listener and, when configured, the scrape listener; on failure neither stays bound. */
  private async listenAdmin(): Promise<{ admin: string; metrics?: string }> {
    const fds = this.deps.inheritedFds;
    const { admin, metrics } = this.config;
    const bound = { admin: formatAddress(await this.admin.listen(admin.listen.host, admin.listen.port, fds?.get('admin'))) };
    if (this.scrape === undefined || metrics === undefined) return bound;
    try {
      this.scrape.allowFrom = await this.sourceFilter(metrics.allowFrom);
      return { ...bound, metrics: formatAddress(await this.scrape.listen(metrics.listen.host, metrics.listen.port, fds?.get('metrics'))) };
    } catch (err) {
      this.closeAdmin();
      throw err;
    }
  }

  private logAdminListening(): void {
    this.deps.log.info({ listener: 'admin', address: this.bound?.admin }, 'listening');
    if (this.bound?.metrics !== undefined) {
      this.deps.log.info({ listener: 'metrics', address: this.bound.metrics, allowFrom: this.scrape?.allowFrom?.ranges ?? 'any' }, 'listening');
    }
  }

  private closeAdmin(): void {
    if (this.admin.server.listening) this.admin.close();
    if (this.scrape?.server.listening === true) this.scrape.close();
  }

  /** Worker: a connection the supervisor accepted on a socket-activated listener. */
  adopt(listener: HandedListener, socket: Socket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    if (listener === 'outbound') this.outbound.adopt(socket);
    else if (this.inbound !== undefined) this.inbound.adopt(socket);
    else socket.destroy();
  }

  /** Control process: attempts the workers reported. */
  observeRemote(batches: readonly [service: string, samples: Sample[]][]): void {
    this.services.observeRemote(batches);
  }

  /** Control process: every service's availability, for a worker that just started. */
  feedbackSnapshots(): [service: string, update: AvailabilityUpdate][] {
    return this.services.feedbackSnapshots();
  }

  /** Applies a validated config; listener addresses only change on restart. */
  async reload(next: MeshConfig): Promise<void> {
    const prev = this.config;
    // Source lists apply at once (narrowing one is how an operator shuts a caller out); resolved
    // before anything changes, so a list that cannot be read rejects the whole reload.
    const outboundFrom = this.role.carriesTraffic && next.outbound.allowFrom !== undefined ? await this.sourceFilter(next.outbound.allowFrom) : undefined;
    const scrapeFrom = this.scrape !== undefined && next.metrics?.allowFrom !== undefined ? await this.sourceFilter(next.metrics.allowFrom) : undefined;
    for (const [name, before, after] of [
      ['outbound.listen', prev.outbound.listen, next.outbound.listen],
      ['admin.listen', prev.admin.listen, next.admin.listen],
      ['metrics.listen', prev.metrics?.listen, next.metrics?.listen],
    ] as const) {
      if (!sameListen(before, after)) {
        this.deps.log.warn(
          {
            key: name,
            running: before === undefined ? 'none' : formatSocketAddress(before),
            configured: after === undefined ? 'none' : formatSocketAddress(after),
          },
          'listener address changes take effect at the next restart',
        );
      }
    }
    if (prev.workers !== next.workers)
      this.deps.log.warn({ key: 'workers', running: prev.workers, configured: next.workers }, 'the number of workers changes at the next restart');
    if ((prev.kubernetes.mesh === undefined) !== (next.kubernetes.mesh === undefined)) {
      this.deps.log.warn({ key: 'kubernetes.mesh' }, 'turning Kubernetes mesh mode on or off takes effect at the next restart');
    }
    if (JSON.stringify(prev.tls) !== JSON.stringify(next.tls) || JSON.stringify(prev.inbound) !== JSON.stringify(next.inbound)) {
      this.deps.log.warn({ key: 'tls/inbound' }, 'tls and inbound settings take effect at the next restart (certificate files are watched and rotate live)');
    }
    // A list taken out keeps the running one until the restart: a reload never opens a listener wider.
    if (outboundFrom !== undefined) this.outbound.allowFrom = outboundFrom;
    if (scrapeFrom !== undefined && this.scrape !== undefined) this.scrape.allowFrom = scrapeFrom;
    this.config = next;
    this.deps.log.level = next.log.level;
    await this.syncTracing();
    this.buildLocal(next);
    await this.services.apply(next);
    if (this.role.carriesTraffic) await this.tcp.sync(next.services, false);
    this.recordReload(true);
  }

  recordReload(success: boolean, problems?: string[]): void {
    this.metrics.configReloaded(success);
    this.lastReload = { at: new Date().toISOString(), result: success ? 'success' : 'failure', ...(problems === undefined ? {} : { problems }) };
  }

  /**
   * Stops accepting, then serves what already reached meshd: for a grace (DRAIN_GRACE_MS at most)
   * idle connections stay open so that requests on their way are answered, with `Connection: close`;
   * then idle connections close and requests in flight get up to `timeoutMs` in all.
   */
  async drain(timeoutMs: number): Promise<{ abandoned: number }> {
    this.draining = true;
    this.outbound.startDrain();
    this.inbound?.startDrain();
    this.tcp.stopAccepting();
    const start = this.deps.clock();
    await this.waitUntil(() => this.inFlight === 0 && this.openConnections === 0, start + Math.min(DRAIN_GRACE_MS, timeoutMs));
    this.outbound.closeIdle();
    this.inbound?.closeIdle();
    await this.waitUntil(() => this.inFlight === 0, start + timeoutMs);
    const abandoned = this.inFlight;
    this.outbound.closeAll();
    this.inbound?.closeAll();
    await Promise.allSettled([...this.local.values()].map((l) => l.close()));
    this.closeAdmin();
    this.upgrades.close();
    this.tcp.destroyAll();
    this.stopMesh();
    await this.services.close();
    // A canary decision of the last moment is on disk before the process goes.
    await this.canaryStore?.settled();
    // Queued spans get a short chance to leave; a dead collector never holds up the exit.
    await Promise.race([this.tracer?.close(), new Promise((r) => setTimeout(r, TRACE_FLUSH_ON_EXIT_MS).unref())]);
    return { abandoned };
  }

  private stopMesh(): void {
    this.router?.close();
    void this.inbound?.closeMesh();
    this.mesh?.namespaces.close();
    this.mesh?.httpRoutes?.close();
    this.mesh?.services.close();
    this.mesh?.view.stop();
  }

  /** Polls `done` until it holds or the clock passes `until`. */
  private async waitUntil(done: () => boolean, until: number): Promise<void> {
    while (!done() && this.deps.clock() < until) await new Promise((r) => setTimeout(r, 20));
  }

  /** HTTP connections still open on the outbound and inbound listeners, busy or idle. */
  private get openConnections(): number {
    return this.outbound.openConnections + (this.inbound?.openConnections ?? 0);
  }

  /** HTTP exchanges, WebSocket tunnels and TCP connections still open. */
  get inFlight(): number {
    return this.outbound.active + this.tcp.active + (this.inbound?.active ?? 0);
  }

  /** (Re)builds the local services; one whose settings did not change keeps its pool. */
  private buildLocal(config: MeshConfig): void {
    for (const [name, existing] of this.local) {
      const next = config.local.get(name);
      if (next !== undefined && JSON.stringify(next) === JSON.stringify(existing.config)) continue;
      this.local.delete(name);
      void existing.close();
    }
    if (!this.role.carriesTraffic) return;
    for (const [name, lc] of config.local) {
      if (this.local.has(name)) continue;
      const metrics = this.metrics;
      this.local.set(
        name,
        new LocalService(lc, {
          observer: metrics,
          decisions: metrics,
          log: this.deps.log,
          clock: this.deps.clock,
          concurrencyLimit: (service, limit) => metrics.concurrencyLimit(service, limit),
          traffic: metrics,
          edges: this.graph,
          witnesses: this.witnesses,
        }),
      );
    }
  }

  readiness(): Readiness {
    const workers = this.role.workers;
    const checks: Record<string, boolean> = {
      listenersBound: this.bound !== undefined,
      configLoaded: true,
      notDraining: !this.draining,
      certificateValid: this.deps.tls === undefined || !this.deps.tls.expired(),
    };
    if (workers !== undefined) checks['workersReady'] = workers.ready === workers.wanted;
    if (this.mesh !== undefined) checks['clusterListed'] = this.mesh.view.synced;
    return { ready: Object.values(checks).every(Boolean), checks };
  }

  state(): unknown {
    const now = this.deps.clock();
    return {
      node: this.config.node,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      // The runtime settings memory was measured with (bin/meshd.js applies them however meshd starts).
      runtime: { node: process.version, v8Flags: process.execArgv, mallocArenaMax: process.env['MALLOC_ARENA_MAX'] },
      config: { source: this.config.source, lastReload: this.lastReload },
      listeners: { ...this.bound, outboundConnectionCap: this.outboundConnectionCap },
      tls:
        this.deps.tls === undefined
          ? undefined
          : {
              identity: this.deps.tls.current.identity,
              notBefore: this.deps.tls.current.notBefore.toISOString(),
              notAfter: this.deps.tls.current.notAfter.toISOString(),
              fingerprint: this.deps.tls.current.fingerprint,
              minVersion: this.deps.tls.settings.minVersion,
            },
      local: [...this.local.values()].map((l) => ({
        name: l.config.name,
        target: `${l.config.target.host}:${l.config.target.port}`,
        allow: l.config.allow,
        deny: l.config.deny,
        tcp: l.config.tcp,
      })),
      draining: this.draining,
      inFlight: this.outbound.active,
      recentDecisions: this.metrics.decisionLog.list(),
      services: this.services.state(now),
      mesh:
        this.mesh === undefined ? undefined : { ...(this.mesh.view.status() as object), router: this.router?.status(), inbound: this.inbound?.meshStatus() },
    };
  }

  /**
   * The supervisor's view: its own state, whose endpoint conditions, detector numbers and
   * statistics cover the whole host's traffic, and each worker's (in flight, pools, limits).
   */
  private async clusterState(workers: WorkerView): Promise<unknown> {
    const own = this.state() as Record<string, unknown>;
    const answers = await workers.query('state');
    // Listeners, in-flight counts and pools are the workers'; their states carry them.
    return {
      ...own,
      listeners: { admin: this.bound?.admin, metrics: this.bound?.metrics },
      inFlight: undefined,
      workers: { wanted: workers.wanted, ready: workers.ready, states: answers },
    };
  }

  /** The supervisor's metrics plus its workers' (counters and histograms summed). */
  private async clusterMetrics(workers: WorkerView): Promise<{ contentType: string; body: string }> {
    return this.metrics.renderAggregated(await workers.query('metrics'));
  }
}

/** How long start waits for the cluster view's first lists before binding anyway (not ready). */
const CLUSTER_VIEW_WAIT_MS = 10_000;

/** Kubernetes mesh mode's shared parts. */
interface MeshParts {
  readonly view: ClusterView;
  readonly namespaces: HeldNamespaces;
  /** HTTPRoutes attached to Services (GAMMA); undefined when `kubernetes.mesh.httpRoutes: false`. */
  readonly httpRoutes: HttpRouteView | undefined;
  /** The Services of the namespaces called: their ports. */
  readonly services: NamespacedObjects<ServiceObject>;
  readonly policies: MeshPolicies;
  readonly discovery: MeshDiscovery;
}

function unknownService(name: string): MeshError {
  return new MeshError('unknown_service', `no service named "${name}" is configured`);
}

/** A worker's address for a listener whose connections the supervisor accepts and hands over. */
const HANDED_OVER = 'handed over by the supervisor';

function formatAddress(a: AddressInfo): string {
  return formatSocketAddress({ host: a.address, port: a.port });
}

/** Both absent, or the same host and port. */
function sameListen(a: SocketAddress | undefined, b: SocketAddress | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.host === b.host && a.port === b.port;
}
