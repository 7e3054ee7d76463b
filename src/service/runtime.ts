/**
 * One outbound service at run time: its endpoint set (static plus discovered),
 * its balancer, its feedback loop and concurrency limit, and its composed
 * stack. It hands each exchange, WebSocket upgrade and TCP connection to the
 * data path; the endpoints, the stack and the protocol adapters live in their
 * own modules.
 */
import type { Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { createBalancer, hashKeyReader, peakEwmaOptions } from '../balancer/create.ts';
import type { Endpoint } from '../balancer/endpoint.ts';
import type { EndpointStatsSnapshot } from '../balancer/endpoint-stats.ts';
import type { Clock, Random } from '../clock.ts';
import type { OutlierSettings, ServiceConfig } from '../config/types.ts';
import type { EndpointsFileStatus } from '../discovery/endpoints-file.ts';
import { discoverySources, type DiscoverySource } from '../discovery/source.ts';
import type { UpdateResult } from '../discovery/source-record.ts';
import type { SliceInformers } from '../discovery/kubernetes-slices.ts';
import type { MeshDiscovery } from '../discovery/mesh-source.ts';
import { FeedbackController, type DecisionRecorder } from '../feedback/controller.ts';
import { HealthChecker, type ProbeTarget } from '../feedback/health-check.ts';
import type { AvailabilityUpdate, FeedbackLoop } from '../feedback/loop.ts';
import type { EndpointHealthView } from '../feedback/outlier.ts';
import { RemoteFeedback, type Sample } from '../feedback/remote.ts';
import type { Logger } from '../log.ts';
import { OUTCOMES, type Outcome } from '../protocol/outcome.ts';
import { upstreamOptions } from '../proxy/http-upstream.ts';
import { relayTcp } from '../proxy/tcp-relay.ts';
import { handshakeFields, type UpgradeForwarder } from '../proxy/upgrade-forwarder.ts';
import { relayWebSocket, type InjectedFault } from '../proxy/websocket-relay.ts';
import type { Admission } from '../stack/admission.ts';
import type { AttemptPicker, AttemptSink } from '../stack/attempt.ts';
import type { Handler } from '../stack/layer.ts';
import { CanaryController, FollowedCanary, type Canary, type CanaryRecorder } from '../canary/canary-controller.ts';
import type { CanaryCommand, CanaryDecision } from '../canary/canary-state.ts';
import { sendRawError, sendRawRedirect } from '../stack/respond.ts';
import { subsetKey, Subsets, WeightedSplit, type Subset } from '../traffic/backends.ts';
import { countInjection, type FaultRegistry } from '../traffic/faults.ts';
import { TrafficPolicy, type TrafficRecorder } from './traffic-policy.ts';
import type { RequestHead } from '../stack/exchange.ts';
import type { InFlightCount } from '../stack/layers.ts';
import type { DataPathObserver, EdgeRecorder, ServiceRecorder } from '../stack/observer.ts';
import type { ExchangeWitnesses } from '../stack/trace.ts';
import { TunnelWitness } from '../stack/tunnel-witness.ts';
import type { CanaryStore } from '../canary/canary-store.ts';
import { RateLimiters } from '../traffic/rate-limiter.ts';
import { RetryBudget } from '../stack/retry-budget.ts';
import type { MeshTlsClient } from '../tls/client.ts';
import { createAdmission } from './concurrency-control.ts';
import { EndpointSet, type EndpointSettings, type HttpEndpoint } from './endpoint-set.ts';
import type { ProcessRole } from './process-role.ts';

export interface ServiceDeps {
  readonly observer: DataPathObserver;
  readonly log: Logger;
  readonly clock: Clock;
  readonly random: Random;
  readonly upgrades: UpgradeForwarder;
  /** Originates mTLS to endpoints that have an identity; undefined without TLS material. */
  readonly tls: MeshTlsClient | undefined;
  readonly decisions: DecisionRecorder;
  /** Evaluation period of the feedback loop. */
  readonly feedbackTickMs: number;
  /** Publishes a service's current concurrency limit (gauge). */
  concurrencyLimit(service: string, limit: number): void;
  /** Counts a discovery source's answer (or failure) by its result. */
  discoveryUpdate(service: string, source: string, result: UpdateResult): void;
  /** What this process does: everything, the supervisor's decisions, or a worker's traffic. */
  readonly role: ProcessRole;
  /** Shared Kubernetes EndpointSlice watches (one per namespace for all services). */
  readonly informers: SliceInformers;
  /** Kubernetes mesh mode: the cluster view its Services' sources read; undefined otherwise. */
  readonly mesh?: MeshDiscovery | undefined;
  /** Fault injections in force, for every service (config and admin API). */
  readonly faults: FaultRegistry;
  /** Routes, rate limits, mirrors, faults and access refusals, as metrics. */
  readonly traffic: TrafficRecorder & CanaryRecorder;
  /** A canary's weight or phase changed (the supervisor tells its workers). */
  canaryMoved?(): void;
  /** Keeps canary rollouts across restarts (the deciding process only); undefined keeps nothing. */
  readonly canaryStore?: CanaryStore | undefined;
  /** The dependency map every exchange is recorded on. */
  readonly edges?: EdgeRecorder;
  /** Traces and access logs. */
  readonly witnesses?: ExchangeWitnesses;
}

export interface EndpointState {
  address: string;
  zone: string | undefined;
  weight: number;
  labels: Readonly<Record<string, string>>;
  sources: readonly string[];
  state: string;
  available: boolean;
  health: EndpointHealthView | undefined;
  inFlight: number;
  stats: EndpointStatsSnapshot;
  pool: { connected: number; free: number; pending: number; running: number };
}

export interface ServiceState {
  name: string;
  balancer: string;
  timeoutMs: number;
  endpoints: EndpointState[];
  discovery: { static: number; file: EndpointsFileStatus | undefined; sources: Record<string, unknown> };
  inFlight: number;
  concurrency: { limit: number; inFlight: number; queued: number } | undefined;
  retryBudget: { requests: number; retries: number; allowance: number };
  /** Worker of several: how long the supervisor's last decision took to arrive (ms). */
  feedbackDelayMs: number | undefined;
  traffic: unknown;
  canary: ReturnType<Canary['view']> | undefined;
}

export class ServiceRuntime implements AttemptSink {
  readonly name: string;
  private config: ServiceConfig;
  private nodeZone: string | undefined;
  private readonly deps: ServiceDeps;
  private readonly recorder: ServiceRecorder;
  private readonly endpoints: EndpointSet;
  /** Subsets of the endpoints by labels, each with its own balancer; `{}` is every endpoint. */
  private readonly subsets: Subsets<HttpEndpoint>;
  private readonly all: Subset<HttpEndpoint>;
  private canary: Canary | undefined;
  /** Every endpoint, or the canary's split between its stable and canary subsets. */
  private defaultBackend: AttemptPicker;
  private policy: TrafficPolicy;
  /** The composed stack; replaced whole on reconfigure. */
  handler: Handler;
  /** Reads a request's consistent-hashing key (ring-hash only); rebuilt with the handler. */
  private hashKey: ReturnType<typeof hashKeyReader> = undefined;
  private readonly inFlight: InFlightCount = { value: 0 };
  private feedback: FeedbackLoop | undefined;
  private admission: Admission | undefined;
  private healthChecker: HealthChecker | undefined;
  private retryBudget: RetryBudget;
  /** Rate limiters that outlive a policy rebuild while their settings stay the same. */
  private readonly limiters: RateLimiters;
  /** The discovery sources the config names, and the key they were built for. */
  private sources: DiscoverySource[] = [];
  private sourcesKey: string | undefined;

  constructor(config: ServiceConfig, nodeZone: string | undefined, deps: ServiceDeps) {
    this.name = config.name;
    this.config = config;
    this.nodeZone = nodeZone;
    this.deps = deps;
    this.recorder = deps.observer.forService(config.name);
    this.endpoints = new EndpointSet(config.name, { observer: deps.observer, clock: deps.clock, tls: deps.tls });
    this.subsets = new Subsets({
      service: config.name,
      clock: deps.clock,
      sink: this,
      capacity: () => this.config.pool.maxConnections + this.config.limits.maxPendingPerEndpoint,
      balancer: () => createBalancer(this.config.balancer, this.nodeZone, deps.random),
    });
    this.all = this.subsets.get({});
    this.retryBudget = new RetryBudget(config.retries.budget);
    this.limiters = new RateLimiters(deps.clock);
    this.feedback = this.createFeedback(config.outlier);
    this.admission = this.createAdmission();
    this.canary = this.createCanary();
    this.defaultBackend = this.createDefaultBackend();
    deps.faults.setConfigFaults(config.name, config.faults);
    this.policy = this.buildPolicy();
    this.handler = this.policy.handler;
  }

  /** Every attempt's result, whatever its protocol: the feedback loop's sample. */
  attemptFinished(
    endpoint: HttpEndpoint,
    outcome: Parameters<AttemptSink['attemptFinished']>[1],
    latencyMs: number,
    status: number,
    overloaded: boolean,
  ): void {
    this.feedback?.observe(endpoint, outcome, latencyMs, status, overloaded);
    this.canary?.observe(endpoint, outcome, latencyMs);
  }

  async start(): Promise<void> {
    this.feedback?.start();
    this.canary?.start();
    this.syncHealthChecker(undefined);
    await this.syncSources();
    this.reconcile();
  }

  /** Applies a new config for this service without dropping requests in flight. */
  async reconfigure(config: ServiceConfig, nodeZone: string | undefined): Promise<void> {
    const previous = this.config;
    this.config = config;
    if (!same(previous.balancer, config.balancer) || nodeZone !== this.nodeZone) {
      this.nodeZone = nodeZone;
      this.subsets.replaceBalancers();
      this.endpoints.setEwmaOptions(peakEwmaOptions(config.balancer));
    }
    if (!same(previous.canary, config.canary)) {
      // A new canary policy starts over (the way out of a sticky rollback besides the admin API).
      this.canary?.stop();
      this.canary = this.createCanary();
      this.canary?.start();
      this.defaultBackend = this.createDefaultBackend();
    }
    this.deps.faults.setConfigFaults(config.name, config.faults);
    if (!same(previous.retries.budget, config.retries.budget)) this.retryBudget = new RetryBudget(config.retries.budget);
    if (!same(previous.concurrency, config.concurrency)) this.admission = this.createAdmission();
    if (config.outlier.enabled !== previous.outlier.enabled) {
      this.feedback?.stop();
      for (const e of this.endpoints.all()) e.available = true;
      this.feedback = this.createFeedback(config.outlier);
      this.feedback?.start();
    } else this.feedback?.reconfigure(config.outlier, config.outlier.returnRampMs);
    this.syncHealthChecker(previous);
    this.policy = this.buildPolicy();
    this.handler = this.policy.handler;
    await this.syncSources();
    this.reconcile();
  }

  /** Stops discovery and closes every pool once its requests finish. */
  async close(): Promise<void> {
    this.healthChecker?.stop();
    this.feedback?.stop();
    this.canary?.stop();
    this.deps.faults.setConfigFaults(this.name, []);
    for (const source of this.sources) source.stop();
    this.subsets.setEndpoints([]);
    await this.endpoints.close();
  }

  /** Requests or tunnels in flight: a service made on demand is not stopped while busy. */
  get busy(): boolean {
    return this.inFlight.value > 0;
  }

  /** Relays a WebSocket upgrade (proxy/websocket-relay.ts). */
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer, started: number, extraFields?: readonly string[], caller?: string): void {
    const { limits } = this.config;
    const { log, clock, tls, upgrades } = this.deps;
    const handshake = handshakeHead(req);
    const witness = this.witnessTunnel('websocket', caller, socket, handshake);
    const admitted = this.policy.admit({ head: handshake, caller });
    const policy = this.policy;
    // A handshake meshd answers itself is a request answered, as on the HTTP path.
    const answered = (status: number, route: string | undefined): void => {
      this.recorder.started();
      this.recorder.ended();
      this.recorder.finishedWithoutEndpoint(status, (clock() - started) / 1000);
      policy.routeFinished(route, status);
    };
    if ('redirect' in admitted) {
      answered(admitted.redirect.status, admitted.route);
      witness.settle({ endpoint: undefined, status: admitted.redirect.status });
      sendRawRedirect(socket, admitted.redirect.status, admitted.redirect.location);
      return;
    }
    if ('refused' in admitted) {
      answered(admitted.refused.status, admitted.route);
      witness.settle({ endpoint: undefined, errorCode: admitted.refused.code });
      sendRawError(socket, admitted.refused);
      return;
    }
    // URLRewrite: the handshake goes upstream with the route's path and Host.
    if (admitted.head !== undefined) req.url = admitted.head.path;
    relayWebSocket(
      {
        service: this.name,
        attempts: admitted.backend,
        inFlight: this.inFlight,
        maxInFlight: limits.maxInFlight,
        hashKey: this.hashKey,
        recorder: this.recorder,
        upgrades,
        tls,
        log,
        clock,
        connectTimeoutMs: this.config.connectTimeoutMs,
        timeoutMs: this.config.timeoutMs,
        fault: (endpoint) => this.injectedFault(endpoint, admitted.route, handshake, caller),
        witness,
        authority: admitted.head?.authority,
        requestHeaders: admitted.requestHeaders,
        routeFinished: (status) => policy.routeFinished(admitted.route, status),
      },
      req,
      socket,
      head,
      started,
      extraFields,
    );
  }

  /** Relays a connection accepted on the service's TCP port (proxy/tcp-relay.ts). */
  relayTcp(client: Socket, callerFields?: readonly string[], caller?: string): void {
    const tcp = this.config.tcp;
    if (tcp === undefined) return void client.destroy();
    const { log, clock, tls } = this.deps;
    const witness = this.witnessTunnel('tcp', caller, client, undefined);
    const admitted = this.policy.admit(undefined);
    if (!('backend' in admitted)) {
      log.warn({ listener: 'tcp', service: this.name, caller, code: admitted.refused.code }, `TCP connection refused: ${admitted.refused.message}`);
      this.recorder.tcpConnection('none', admitted.refused.code === 'rate_limited' ? 'rate_limited' : 'forbidden');
      witness.settle({ endpoint: undefined, errorCode: admitted.refused.code });
      return void client.destroy();
    }
    void relayTcp(
      {
        service: this.name,
        attempts: admitted.backend,
        budget: this.retryBudget,
        recorder: this.recorder,
        log,
        clock,
        tls,
        connectTimeoutMs: this.config.connectTimeoutMs,
        idleTimeoutMs: tcp.idleTimeoutMs,
        attemptsAllowed: this.config.retries.attempts,
        fault: (endpoint) => this.injectedFault(endpoint, undefined, NO_HEAD, caller),
        witness,
      },
      client,
      callerFields,
    );
  }

  /** A caller outside tcp.allowFrom was refused at the service's TCP port. */
  tcpRefused(remote: string | undefined): void {
    this.recorder.tcpConnection('none', 'source_refused');
    this.deps.log.warn({ listener: 'tcp', service: this.name, remote }, 'connection from a source outside tcp.allowFrom refused');
  }

  /** Supervisor: attempts reported by the workers, fed to the detector and to the endpoints' statistics. */
  observeRemote(samples: readonly Sample[]): void {
    const now = this.deps.clock();
    for (const [address, outcome, latencyMs, status, overloaded] of samples) {
      const endpoint = this.endpoints.get(address);
      if (endpoint === undefined) continue; // removed by discovery since
      endpoint.record(outcome, latencyMs, now);
      this.feedback?.observe(endpoint, outcome, latencyMs, status, overloaded);
      this.canary?.observe(endpoint, outcome, latencyMs);
    }
  }

  /** An operator's command to the canary (admin API); undefined when the service has none. */
  canaryCommand(command: CanaryCommand): CanaryDecision | undefined {
    return this.canary instanceof CanaryController ? this.canary.command(command) : undefined;
  }

  /** The canary's weight and phase as decided here (the supervisor's, for its workers). */
  canaryDecided(): { weight: number; phase: string } | undefined {
    return this.canary instanceof CanaryController ? { weight: this.canary.weight, phase: this.canary.phase } : undefined;
  }

  /** Worker: the supervisor's decision for this service's canary. */
  followCanary(weight: number, phase: string): void {
    if (this.canary instanceof FollowedCanary) this.canary.follow(weight, phase);
  }

  /** Supervisor: every endpoint's availability now, for a worker that just started. */
  feedbackSnapshot(): AvailabilityUpdate | undefined {
    return this.feedback instanceof FeedbackController ? this.feedback.snapshot() : undefined;
  }

  state(now: number): ServiceState {
    return {
      name: this.name,
      balancer: this.config.balancer.algorithm,
      timeoutMs: this.config.timeoutMs,
      endpoints: this.endpoints.all().map((e) => ({
        address: e.address,
        zone: e.spec.zone,
        weight: e.spec.weight,
        labels: e.spec.labels,
        sources: this.endpoints.sources(e.address),
        state: this.feedback?.condition(e.address) ?? 'active',
        available: e.available,
        health: this.feedback?.view(e.address),
        inFlight: e.inFlight,
        stats: e.stats.snapshot(now),
        pool: e.upstream.stats(),
      })),
      discovery: {
        static: this.config.endpoints.length,
        file: this.sources.find((s) => s.name === 'file')?.status() as EndpointsFileStatus | undefined,
        sources: Object.fromEntries(this.sources.map((s) => [s.name, s.status()])),
      },
      inFlight: this.inFlight.value,
      concurrency: this.admission === undefined ? undefined : { limit: this.admission.limit, inFlight: this.admission.inFlight, queued: this.admission.queued },
      feedbackDelayMs: this.feedback instanceof RemoteFeedback ? this.feedback.lastDelayMs : undefined,
      retryBudget: this.retryBudget.snapshot(this.deps.clock()),
      traffic: this.policy.state(),
      canary: this.canary?.view(),
    };
  }

  /** Seconds since the least recently successful discovery source answered; undefined without sources. */
  discoveryStaleness(): number | undefined {
    let worst: number | undefined;
    for (const source of this.sources) {
      // A watched file is as fresh as its last check, which its status does not keep: only the
      // sources that ask a server report staleness.
      if (source.name === 'file') continue;
      const stale = (source.status() as { staleSeconds?: number }).staleSeconds;
      // A source that never answered is as stale as meshd is old; report it as such.
      const seconds = stale ?? performance.now() / 1000;
      worst = worst === undefined ? seconds : Math.max(worst, seconds);
    }
    return worst;
  }

  /** Every endpoint's attempts by outcome (retries, WebSocket handshakes and TCP connects included). */
  attemptCounts(out: AttemptCount[]): void {
    for (const e of this.endpoints.all()) {
      const totals = e.stats.totals;
      for (const outcome of OUTCOMES) {
        const count = totals[outcome];
        if (count > 0) out.push({ service: this.name, endpoint: e.address, outcome, count });
      }
    }
  }

  /** Endpoint counts by state for the meshd_endpoints gauge; every state appears, even at 0. */
  countByState(): Map<string, number> {
    const counts = new Map<string, number>([
      ['active', 0],
      ['probation', 0],
      ['ejected', 0],
      ['unhealthy', 0],
    ]);
    for (const e of this.endpoints.all()) {
      const state = this.feedback?.condition(e.address) ?? 'active';
      counts.set(state, (counts.get(state) ?? 0) + 1);
    }
    return counts;
  }

  private createAdmission(): Admission | undefined {
    // Concurrency limits adapt in the processes that carry the traffic.
    if (!this.deps.role.carriesTraffic) return undefined;
    const { log, clock, decisions } = this.deps;
    return createAdmission(this.name, this.config.concurrency, {
      log,
      clock,
      decisions,
      limit: (service, limit) => this.deps.concurrencyLimit(service, limit),
    });
  }

  private createFeedback(settings: OutlierSettings): FeedbackLoop | undefined {
    if (!settings.enabled) return undefined;
    const { clock, log, decisions, feedbackTickMs } = this.deps;
    return this.deps.role.feedbackLoop(this.name, settings, { clock, log, recorder: decisions, tickMs: feedbackTickMs });
  }

  private buildPolicy(): TrafficPolicy {
    const { clock, random, log, faults, traffic } = this.deps;
    this.hashKey = hashKeyReader(this.config.balancer);
    const policy = new TrafficPolicy({
      config: this.config,
      clock,
      random,
      log,
      recorder: this.recorder,
      traffic,
      faults,
      subsets: this.subsets,
      defaultBackend: this.defaultBackend,
      admission: () => this.admission,
      hashKey: this.hashKey,
      retryBudget: this.retryBudget,
      inFlight: this.inFlight,
      limiters: this.limiters,
      edges: this.deps.edges,
      witnesses: this.deps.witnesses,
    });
    this.limiters.settle();
    const canary = this.config.canary;
    const keep = new Set(policy.subsetKeys);
    if (canary !== undefined) for (const labels of [canary.stable, canary.canary]) keep.add(subsetKey(labels));
    this.subsets.retain(keep);
    return policy;
  }

  private createCanary(): Canary | undefined {
    const canary = this.config.canary;
    if (canary === undefined) return undefined;
    // With several workers the supervisor judges on all their samples; a worker follows its weight.
    if (!this.deps.role.decidesFeedback) return new FollowedCanary(canary);
    const { clock, log, traffic } = this.deps;
    return new CanaryController(this.name, canary, {
      clock,
      log,
      recorder: traffic,
      moved: () => this.deps.canaryMoved?.(),
      store: this.deps.canaryStore,
    });
  }

  /** Every endpoint; with a canary, its stable and canary subsets at the weight it decides (read per pick). */
  private createDefaultBackend(): AttemptPicker {
    const canary = this.canary;
    if (canary === undefined) return this.all;
    const { stable, canary: next } = canary.config;
    return new WeightedSplit(
      this.name,
      [
        { source: this.subsets.get(stable), weight: () => 100 - canary.weight },
        { source: this.subsets.get(next), weight: () => canary.weight },
      ],
      this.deps.random,
    );
  }

  /** The fault injection for a tunnel or connection to `endpoint` (rolled and counted), as the relays apply it. */
  private injectedFault(endpoint: Endpoint, route: string | undefined, head: RequestHead, caller: string | undefined): InjectedFault | undefined {
    const faults = this.deps.faults;
    if (!faults.has(this.name)) return undefined;
    const plan = faults.plan(this.name, endpoint, route, head, caller);
    if (plan === undefined) return undefined;
    if (plan.delayMs > 0) countInjection(plan, 'delay', this.deps.traffic);
    if (plan.abort !== undefined) countInjection(plan, plan.abort.reset ? 'reset' : 'abort', this.deps.traffic);
    return { name: plan.fault.spec.name, delayMs: plan.delayMs, abort: plan.abort };
  }

  /** A WebSocket handshake the policy refuses: 403, 404, 429 or 500 on the raw socket. */
  /** A tunnel's span, map edge and access line, ended when the caller's socket closes. */
  private witnessTunnel(protocol: 'websocket' | 'tcp', caller: string | undefined, socket: Socket, handshake: RequestHead | undefined): TunnelWitness {
    const witness = new TunnelWitness(
      { witnesses: this.deps.witnesses, edges: this.deps.edges, clock: this.deps.clock },
      {
        kind: 'outbound',
        protocol,
        service: this.name,
        caller: caller ?? socket.remoteAddress ?? 'unknown',
        verified: caller !== undefined,
        fields: handshake,
        method: handshake?.method,
        path: handshake?.path,
      },
    );
    socket.once('close', () => witness.end(socket));
    return witness;
  }

  /** Starts, restarts or stops active health checks to match the config. */
  private syncHealthChecker(previous: ServiceConfig | undefined): void {
    const want = this.config.healthCheck;
    if (previous !== undefined && same(previous.healthCheck, want) && previous.outlier.enabled === this.config.outlier.enabled) return;
    this.healthChecker?.stop();
    this.healthChecker = undefined;
    // One prober per host: with several workers, the supervisor checks for all of them.
    if (want === undefined || this.feedback === undefined || !this.deps.role.decidesFeedback) return;
    const feedback = this.feedback;
    this.healthChecker = new HealthChecker(want, this.deps.random, (address, healthy) => {
      this.deps.log.info(
        { event: 'health_check', service: this.name, endpoint: address, healthy },
        `health check of ${address}: ${healthy ? 'passing' : 'failing'}`,
      );
      feedback.health(address, healthy);
    });
    this.healthChecker.setTargets(this.probeTargets());
  }

  /** What the health checker probes: every endpoint, over mTLS with its identity when it has one. */
  private probeTargets(): ProbeTarget[] {
    const tls = this.deps.tls;
    return this.endpoints.all().map((e) => {
      const identity = e.spec.identity;
      const secure = identity === undefined || tls === undefined ? undefined : { options: () => tls.connectionOptions(identity), service: this.name };
      return { address: e.address, host: e.spec.host, port: e.spec.port, tls: secure };
    });
  }

  /** (Re)builds the discovery sources when the config names other ones; an unchanged set keeps running. */
  private async syncSources(): Promise<void> {
    const { key, create } = discoverySources(
      this.config,
      {
        updated: (source) => {
          if (this.sources.some((s) => s.name === source)) this.reconcile();
        },
        counted: (source, result) => this.deps.discoveryUpdate(this.name, source, result),
      },
      { log: this.deps.log, random: this.deps.random, informers: this.deps.informers, mesh: this.deps.mesh },
    );
    if (key === this.sourcesKey) return;
    for (const source of this.sources) {
      source.stop();
      this.endpoints.setSource(source.name, undefined);
    }
    this.sources = create();
    this.sourcesKey = key;
    // A service waits for its sources' first answers, but not for a source that hangs: it starts
    // with what it has, and the source's answer reconciles the set whenever it comes.
    let timer: NodeJS.Timeout | undefined;
    const patience = new Promise<'slow'>((resolve) => (timer = setTimeout(() => resolve('slow'), FIRST_ANSWER_MS)));
    const first = await Promise.race([Promise.all(this.sources.map((s) => s.start())), patience]);
    clearTimeout(timer);
    if (first === 'slow') {
      this.deps.log.warn(
        { service: this.name, waitedMs: FIRST_ANSWER_MS },
        'a discovery source has not answered yet; starting with the endpoints known so far',
      );
    }
  }

  /** Makes the endpoint set equal to static ∪ every source, then tells the balancer, the feedback loop and the prober. */
  private reconcile(): void {
    this.endpoints.setSource('static', this.config.endpoints);
    for (const source of this.sources) this.endpoints.setSource(source.name, source.endpoints);
    const settings: EndpointSettings = { upstream: upstreamOptions(this.config), ewma: peakEwmaOptions(this.config.balancer) };
    const { added, removed } = this.endpoints.reconcile(settings);
    const all = this.endpoints.all();
    this.subsets.setEndpoints(all);
    this.feedback?.setEndpoints(all);
    this.healthChecker?.setTargets(this.probeTargets());
    if (added.length > 0 || removed.length > 0) {
      this.deps.log.info({ service: this.name, added, removed, endpoints: this.endpoints.size }, 'endpoints changed');
    }
  }
}

/** What a TCP connection offers to fault matching: no method, path or fields. */
const NO_HEAD: RequestHead = { method: '', path: '/', authority: undefined, hasBody: false, remoteAddress: undefined, fields: [], field: () => undefined };

/** A WebSocket handshake as the route table reads requests. */
function handshakeHead(req: IncomingMessage): RequestHead {
  return {
    ...handshakeFields(req),
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    authority: undefined,
    hasBody: false,
    remoteAddress: req.socket.remoteAddress,
    fields: req.rawHeaders,
  };
}

/** One endpoint's attempts with one outcome (meshd_endpoint_attempts_total). */
export interface AttemptCount {
  readonly service: string;
  readonly endpoint: string;
  readonly outcome: Outcome;
  readonly count: number;
}

/** How long a new service waits for its discovery sources' first answers. */
const FIRST_ANSWER_MS = 5_000;

/** Settings compared by value (they come from a fresh, deep-frozen config on every reload). */
function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
