/**
 * One outbound service at run time: its endpoints (static plus discovered),
 * its balancer, and its composed stack. Endpoint objects are reconciled by
 * address, so a reload or discovery update never resets load or history and
 * never cuts a request in flight.
 */
import type { Balancer } from '../balancer/balancer.ts';
import { createBalancer, hashKeyReader, peakEwmaOptions } from '../balancer/create.ts';
import { PeakEwma } from '../balancer/peak-ewma.ts';
import { Endpoint } from '../balancer/endpoint.ts';
import type { Clock, Random } from '../clock.ts';
import type { EndpointSpec, ServiceConfig } from '../config/types.ts';
import { EndpointsFileSource, type EndpointsFileStatus } from '../discovery/endpoints-file.ts';
import type { EndpointStatsSnapshot } from '../balancer/endpoint-stats.ts';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { formatSocketAddress } from '../config/address.ts';
import type { MeshTlsClient } from '../tls/client.ts';
import { TcpListener } from '../listeners/tcp.ts';
import type { SourceFilter } from '../listeners/source-filter.ts';
import { connectTcp, splice } from '../proxy/tcp-forwarder.ts';
import { MeshError } from '../errors.ts';
import { FeedbackController, type DecisionRecorder } from '../feedback/controller.ts';
import type { AvailabilityUpdate, FeedbackLoop } from '../feedback/loop.ts';
import type { ProcessRole } from './process-role.ts';
import { RemoteFeedback, type Sample } from '../feedback/remote.ts';
import { HealthChecker, type ProbeTarget } from '../feedback/health-check.ts';
import type { EndpointHealthView } from '../feedback/outlier.ts';
import type { OutlierSettings } from '../config/types.ts';
import type { Logger } from '../log.ts';
import { upgradeRequestHeaders, type UpgradeForwarder } from '../proxy/upgrade-forwarder.ts';
import { sendRawError } from '../stack/respond.ts';
import { forwardHttp } from '../proxy/http-forwarder.ts';
import { HttpUpstream, sameUpstreamOptions, upstreamOptions } from '../proxy/http-upstream.ts';
import { compose, type Handler } from '../stack/layer.ts';
import { deadlineLayer } from '../stack/deadline.ts';
import { balanceLayer, limitLayer, observeLayer, respondLayer, type InFlightCount } from '../stack/layers.ts';
import { retryLayer, type RetryPolicy } from '../stack/retry.ts';
import { Admission, admissionLayer } from '../stack/admission.ts';
import { GradientLimiter, DEFAULT_CONCURRENCY, type LimitChange } from '../feedback/concurrency.ts';
import type { ConcurrencySettings } from '../config/types.ts';
import { RetryBudget } from '../stack/retry-budget.ts';
import type { DataPathObserver, ServiceRecorder } from '../stack/observer.ts';

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
  /** Counts a failed discovery read (file source). */
  discoveryFailed(service: string, source: string): void;
  /** The filter for an allowFrom list, its `node-pod-cidrs` entry resolved; undefined allows all. */
  sourceFilter(ranges: readonly string[] | undefined): Promise<SourceFilter | undefined>;
  /** What this process does: everything, the supervisor's decisions, or a worker's traffic. */
  readonly role: ProcessRole;
}

export interface EndpointState {
  address: string;
  zone: string | undefined;
  weight: number;
  labels: Readonly<Record<string, string>>;
  sources: string[];
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
  discovery: { static: number; file: EndpointsFileStatus | undefined };
  inFlight: number;
  concurrency: { limit: number; inFlight: number; queued: number } | undefined;
  retryBudget: { requests: number; retries: number; allowance: number };
  /** Worker of several: how long the supervisor's last decision took to arrive (ms). */
  feedbackDelayMs: number | undefined;
}

type HttpEndpoint = Endpoint<HttpUpstream>;

export class ServiceRuntime {
  readonly name: string;
  private config: ServiceConfig;
  private readonly deps: ServiceDeps;
  private readonly recorder: ServiceRecorder;
  private balancer: Balancer;
  /** The composed stack; replaced whole on reconfigure. */
  handler: Handler;
  /** Reads a request's consistent-hashing key (ring-hash only); rebuilt with the handler. */
  private hashKey: ReturnType<typeof hashKeyReader> = undefined;
  private readonly endpoints = new Map<string, HttpEndpoint>();
  private readonly sourcesOf = new Map<string, string[]>();
  private readonly inFlight: InFlightCount = { value: 0 };
  private feedback: FeedbackLoop | undefined;
  private admission: Admission | undefined;
  private healthChecker: HealthChecker | undefined;
  private lastLoggedLimit = 0;
  private shedSinceLog = 0;
  private shedLoggedAt = Number.NEGATIVE_INFINITY;
  private tcpListener: TcpListener | undefined;
  private tcpAddress: string | undefined;
  private retryBudget: RetryBudget;
  private fileSource: EndpointsFileSource | undefined;

  private nodeZone: string | undefined;

  constructor(config: ServiceConfig, nodeZone: string | undefined, deps: ServiceDeps) {
    this.name = config.name;
    this.config = config;
    this.nodeZone = nodeZone;
    this.deps = deps;
    this.recorder = deps.observer.forService(config.name);
    this.balancer = createBalancer(config.balancer, nodeZone, deps.random);
    this.retryBudget = new RetryBudget(config.retries.budget);
    this.feedback = this.createFeedback(config.outlier);
    this.admission = this.createAdmission(config.concurrency);
    this.handler = this.buildHandler();
  }

  private createAdmission(settings: ConcurrencySettings): Admission | undefined {
    // Concurrency limits adapt in the processes that carry the traffic.
    if (!settings.adaptive || !this.deps.role.carriesTraffic) return undefined;
    const limiter = new GradientLimiter({
      ...DEFAULT_CONCURRENCY,
      initialLimit: settings.initialLimit,
      minLimit: settings.minLimit,
      maxLimit: settings.maxLimit,
      tolerance: settings.tolerance,
      windowMs: settings.windowMs,
    });
    this.lastLoggedLimit = limiter.limit;
    this.deps.concurrencyLimit(this.name, limiter.limit);
    return new Admission(limiter, settings.queue, this.deps.clock, {
      limitChanged: (change) => this.onLimitChange(change),
      shed: (reason, limit, queued) => this.onShed(reason, limit, queued),
    });
  }

  private onLimitChange(change: LimitChange): void {
    const { log, decisions } = this.deps;
    this.deps.concurrencyLimit(this.name, change.to);
    decisions.decision(this.name, 'limit_change', change.to > change.from ? 'increase' : 'decrease');
    // Explain big moves at info; the steady drift of a working limit at debug.
    const big = Math.abs(change.to - this.lastLoggedLimit) >= Math.max(2, this.lastLoggedLimit * 0.2);
    const fields = { event: 'limit_change', service: this.name, from: change.from, to: change.to, shortRttMs: round(change.shortRttMs), baselineRttMs: round(change.baselineRttMs), gradient: round(change.gradient), maxInFlight: change.maxInFlight };
    if (big) {
      this.lastLoggedLimit = change.to;
      log.info(fields, `concurrency limit of ${this.name}: ${change.from} → ${change.to}`);
    } else log.debug(fields, 'concurrency limit adjusted');
  }

  private onShed(reason: 'queue_full' | 'queue_timeout', limit: number, queued: number): void {
    const { log, decisions, clock } = this.deps;
    decisions.decision(this.name, 'shed', reason);
    this.shedSinceLog++;
    // One log line per second at most under sustained overload, with the count.
    const now = clock();
    if (now - this.shedLoggedAt >= 1_000) {
      log.warn({ event: 'shed', service: this.name, reason, limit, queued, shedSinceLastLog: this.shedSinceLog }, `shedding load for ${this.name}: ${reason}`);
      this.shedLoggedAt = now;
      this.shedSinceLog = 0;
    }
  }

  private createFeedback(settings: OutlierSettings): FeedbackLoop | undefined {
    if (!settings.enabled) return undefined;
    const { clock, log, decisions, feedbackTickMs } = this.deps;
    return this.deps.role.feedbackLoop(this.name, settings, { clock, log, recorder: decisions, tickMs: feedbackTickMs });
  }

  /** Control process: attempts reported by the workers, fed to the detector and to the endpoints' statistics. */
  observeRemote(samples: readonly Sample[]): void {
    const now = this.deps.clock();
    for (const [address, outcome, latencyMs, status, overloaded] of samples) {
      const endpoint = this.endpoints.get(address);
      if (endpoint === undefined) continue; // removed by discovery since
      endpoint.record(outcome, latencyMs, now);
      this.feedback?.observe(endpoint, outcome, latencyMs, status, overloaded);
    }
  }

  /** Control process: every endpoint's availability now, for a worker that just started. */
  feedbackSnapshot(): AvailabilityUpdate | undefined {
    return this.feedback instanceof FeedbackController ? this.feedback.snapshot() : undefined;
  }

  async start(): Promise<void> {
    this.feedback?.start();
    this.syncHealthChecker(undefined);
    await this.startFileSource();
    this.reconcile();
    await this.syncTcpListener(true);
  }

  /** Applies a new config for this service without dropping requests in flight. */
  async reconfigure(config: ServiceConfig, nodeZone: string | undefined): Promise<void> {
    const previous = this.config;
    this.config = config;
    if (JSON.stringify(previous.balancer) !== JSON.stringify(config.balancer) || nodeZone !== this.nodeZone) {
      this.nodeZone = nodeZone;
      this.balancer = createBalancer(config.balancer, nodeZone, this.deps.random);
      const ewma = peakEwmaOptions(config.balancer);
      for (const e of this.endpoints.values()) e.load.setOptions(ewma);
    }
    if (JSON.stringify(previous.retries.budget) !== JSON.stringify(config.retries.budget)) this.retryBudget = new RetryBudget(config.retries.budget);
    if (JSON.stringify(config.concurrency) !== JSON.stringify(previous.concurrency)) this.admission = this.createAdmission(config.concurrency);
    if (config.outlier.enabled !== previous.outlier.enabled) {
      this.feedback?.stop();
      for (const e of this.endpoints.values()) e.available = true;
      this.feedback = this.createFeedback(config.outlier);
      this.feedback?.start();
    } else this.feedback?.reconfigure(config.outlier, config.outlier.returnRampMs);
    this.syncHealthChecker(previous);
    this.handler = this.buildHandler();
    if (previous.endpointsFile !== config.endpointsFile) {
      this.fileSource?.stop();
      this.fileSource = undefined;
      await this.startFileSource();
    }
    this.reconcile();
    await this.syncTcpListener(false);
  }

  /** Stops discovery and closes every pool once its requests finish. */
  async close(): Promise<void> {
    this.healthChecker?.stop();
    this.feedback?.stop();
    this.fileSource?.stop();
    this.tcpListener?.stopAccepting();
    this.tcpListener?.destroyAll();
    const pools = [...this.endpoints.values()].map((e) => e.upstream.close());
    this.endpoints.clear();
    this.balancer.setEndpoints([]);
    await Promise.allSettled(pools);
  }

  state(now: number): ServiceState {
    return {
      name: this.name,
      balancer: this.balancer.algorithm,
      timeoutMs: this.config.timeoutMs,
      endpoints: [...this.endpoints.values()].map((e) => ({
        address: e.address,
        zone: e.spec.zone,
        weight: e.spec.weight,
        labels: e.spec.labels,
        sources: this.sourcesOf.get(e.address) ?? [],
        state: this.feedback?.condition(e.address) ?? 'active',
        available: e.available,
        health: this.feedback?.view(e.address),
        inFlight: e.inFlight,
        stats: e.stats.snapshot(now),
        pool: e.upstream.stats(),
      })),
      discovery: { static: this.config.endpoints.length, file: this.fileSource?.status() },
      inFlight: this.inFlight.value,
      concurrency: this.admission === undefined ? undefined : { limit: this.admission.limit, inFlight: this.admission.inFlight, queued: this.admission.queued },
      feedbackDelayMs: this.feedback instanceof RemoteFeedback ? this.feedback.lastDelayMs : undefined,
      retryBudget: this.retryBudget.snapshot(this.deps.clock()),
    };
  }

  /**
   * Relays a connection upgrade (WebSocket) to a balanced endpoint, over mTLS when the endpoint is
   * another meshd. The tunnel counts as in flight on its endpoint and against the service's
   * limit until the client socket closes; the handshake is bounded by the service timeout.
   */
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer, started: number): void {
    const { clock, log } = this.deps;
    const { limits, pool } = this.config;
    const refuse = (err: MeshError): void => {
      this.recorder.finishedWithoutEndpoint(err.status, (clock() - started) / 1000);
      sendRawError(socket, err);
    };
    if (this.inFlight.value >= limits.maxInFlight) {
      return refuse(new MeshError('overloaded', `service "${this.name}" is at its limit of ${limits.maxInFlight} requests in flight`, { retryAfterSeconds: 1 }));
    }
    const capacity = pool.maxConnections + limits.maxPendingPerEndpoint;
    const key = this.hashKey?.(req.headers);
    let endpoint = this.balancer.pick(clock(), key);
    for (let i = 0; i < 3 && endpoint !== undefined && endpoint.inFlight >= capacity; i++) endpoint = this.balancer.pick(clock(), key) ?? endpoint;
    if (endpoint === undefined) return refuse(new MeshError('no_endpoints', `service "${this.name}" has no available endpoints`, { retryAfterSeconds: 1 }));
    if (endpoint.inFlight >= capacity) {
      return refuse(new MeshError('overloaded', `every endpoint of "${this.name}" is at its limit of ${capacity} requests in flight`, { retryAfterSeconds: 1 }));
    }
    const identity = endpoint.spec.identity;
    if (identity !== undefined && this.deps.tls === undefined) {
      return refuse(new MeshError('connect_failed', `endpoint ${endpoint.address} has an identity but this host has no TLS material`));
    }
    const chosen = endpoint;
    chosen.inFlight++;
    this.inFlight.value++;
    socket.once('close', () => {
      chosen.inFlight--;
      this.inFlight.value--;
    });
    const target = { host: chosen.spec.host, port: chosen.spec.port, tls: identity === undefined ? undefined : this.deps.tls?.connectionOptions(identity) };
    const limitsOfUpgrade = { connectTimeoutMs: this.config.connectTimeoutMs, handshakeTimeoutMs: this.config.timeoutMs };
    this.deps.upgrades.forward(req, socket, head, target, upgradeRequestHeaders(req), limitsOfUpgrade, started, clock, (result) => {
      chosen.record(result.outcome, result.handshakeMs, clock());
      this.feedback?.observe(chosen, result.outcome, result.handshakeMs, result.status ?? 0, false);
      const failure =
        result.error === undefined
          ? undefined
          : result.outcome === 'connect_failed'
            ? new MeshError('connect_failed', `cannot connect to ${chosen.address}`, { cause: result.error })
            : result.outcome === 'timeout'
              ? new MeshError('upstream_timeout', `${chosen.address} did not answer the upgrade in time`, { cause: result.error })
              : new MeshError('upstream_reset', `${chosen.address} closed the connection during the upgrade`, { cause: result.error });
      chosen.recorder.finished(failure?.status ?? result.status ?? 101, result.handshakeMs / 1000);
      if (failure !== undefined) {
        log.warn({ service: this.name, endpoint: chosen.address, code: failure.code, cause: (result.error as NodeJS.ErrnoException).code ?? result.error?.message }, failure.message);
        sendRawError(socket, failure);
      }
    });
  }

  /** Starts, restarts or stops active health checks to match the config. */
  private syncHealthChecker(previous: ServiceConfig | undefined): void {
    const want = this.config.healthCheck;
    if (previous !== undefined && JSON.stringify(previous.healthCheck) === JSON.stringify(want) && previous.outlier.enabled === this.config.outlier.enabled) return;
    this.healthChecker?.stop();
    this.healthChecker = undefined;
    // One prober per host: with several workers, the supervisor checks for all of them.
    if (want === undefined || this.feedback === undefined || !this.deps.role.decidesFeedback) return;
    const feedback = this.feedback;
    this.healthChecker = new HealthChecker(want, this.deps.random, (address, healthy) => {
      this.deps.log.info({ event: 'health_check', service: this.name, endpoint: address, healthy }, `health check of ${address}: ${healthy ? 'passing' : 'failing'}`);
      feedback.health(address, healthy);
    });
    this.healthChecker.setTargets(this.probeTargets());
  }

  /** What the health checker probes: every endpoint, over mTLS with its identity when it has one. */
  private probeTargets(): ProbeTarget[] {
    const tls = this.deps.tls;
    return [...this.endpoints.values()].map((e) => {
      const identity = e.spec.identity;
      const secure = identity === undefined || tls === undefined ? undefined : { options: () => tls.connectionOptions(identity), service: this.name };
      return { address: e.address, host: e.spec.host, port: e.spec.port, tls: secure };
    });
  }

  /** Stops accepting TCP connections (drain); open ones continue until close(). */
  stopAcceptingTcp(): void {
    this.tcpListener?.stopAccepting();
  }

  /** Open TCP connections through this service's listener. */
  get tcpActive(): number {
    return this.tcpListener?.active ?? 0;
  }

  /** Binds, moves or removes the service's TCP listener to match the config. */
  private async syncTcpListener(failOnBindError: boolean): Promise<void> {
    const want = this.deps.role.carriesTraffic ? this.config.tcp : undefined;
    const key = want === undefined ? undefined : formatSocketAddress(want.listen);
    const allowFrom = await this.deps.sourceFilter(want?.allowFrom);
    if (key === this.tcpAddress) {
      if (this.tcpListener !== undefined) this.tcpListener.allowFrom = allowFrom;
      return;
    }
    let fresh: TcpListener | undefined;
    if (want !== undefined) {
      fresh = new TcpListener(
        this.name,
        want.maxConnections,
        allowFrom,
        {
          connection: (socket) => void this.openTcp(socket),
          refused: (remote) => {
            this.recorder.tcpConnection('none', 'source_refused');
            this.deps.log.warn({ listener: 'tcp', service: this.name, remote }, 'connection from a source outside tcp.allowFrom refused');
          },
        },
        this.deps.log,
      );
      try {
        const bound = await fresh.listen(want.listen.host, want.listen.port, this.deps.role.sharesPorts);
        this.deps.log.info({ listener: 'tcp', service: this.name, address: formatSocketAddress({ host: bound.address, port: bound.port }) }, 'listening');
      } catch (err) {
        if (failOnBindError) throw err;
        this.deps.log.error({ service: this.name, address: key, err }, 'cannot bind the TCP listener; keeping the previous one');
        return;
      }
    }
    // Connections on a replaced listener continue; only new ones go to the new address.
    this.tcpListener?.stopAccepting();
    this.tcpListener = fresh;
    this.tcpAddress = key;
  }

  /** Balances one TCP connection: connect failures are retried on other endpoints, then bytes are spliced. */
  private async openTcp(client: Socket): Promise<void> {
    const { clock, log } = this.deps;
    const tcp = this.config.tcp;
    if (tcp === undefined) return void client.destroy();
    this.retryBudget.recordRequest(clock());
    let avoid: Endpoint | undefined;
    for (let attempt = 1; ; attempt++) {
      // Every local client has the same address, so TCP is never hashed: the fallback spreads it.
      let endpoint = this.balancer.pick(clock(), undefined);
      if (endpoint === avoid) endpoint = this.balancer.pick(clock(), undefined) ?? endpoint;
      if (endpoint === undefined) {
        this.recorder.tcpConnection('none', 'no_endpoints');
        log.warn({ service: this.name, code: 'no_endpoints' }, 'TCP connection refused: no available endpoints');
        client.destroy();
        return;
      }
      const started = clock();
      endpoint.inFlight++;
      let upstream: Socket;
      try {
        upstream = await connectTcp(endpoint.spec, this.config.connectTimeoutMs, this.name, this.deps.tls);
      } catch (err) {
        endpoint.inFlight--;
        endpoint.record('connect_failed', clock() - started, clock());
        this.feedback?.observe(endpoint, 'connect_failed', clock() - started, 0, false);
        this.recorder.tcpConnection(endpoint.address, 'connect_failed');
        const retry = attempt < this.config.retries.attempts && !client.destroyed && this.retryBudget.tryWithdraw(clock());
        log.warn({ service: this.name, endpoint: endpoint.address, code: 'connect_failed', cause: (err as NodeJS.ErrnoException).code, retry }, 'TCP connect failed');
        if (!retry) {
          client.destroy();
          return;
        }
        this.recorder.retried('connect_failed');
        avoid = endpoint;
        continue;
      }
      const connected = endpoint;
      connected.record('success', clock() - started, clock());
      this.feedback?.observe(connected, 'success', clock() - started, 0, false);
      this.recorder.tcpConnection(connected.address, 'connected');
      if (client.destroyed) {
        upstream.destroy();
        connected.inFlight--;
        return;
      }
      splice(client, upstream, tcp.idleTimeoutMs, () => connected.inFlight--);
      client.resume();
      return;
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
    for (const e of this.endpoints.values()) {
      const state = this.feedback?.condition(e.address) ?? 'active';
      counts.set(state, (counts.get(state) ?? 0) + 1);
    }
    return counts;
  }

  private buildHandler(): Handler {
    const { name, timeoutMs, retries, limits, pool } = this.config;
    const { clock, random } = this.deps;
    this.hashKey = hashKeyReader(this.config.balancer);
    const policy: RetryPolicy = {
      attempts: retries.attempts,
      retryOn: new Set(retries.retryOn),
      retryOnGrpc: new Set(retries.retryOnGrpc),
      backoffBaseMs: retries.backoffBaseMs,
      backoffMaxMs: retries.backoffMaxMs,
      bufferLimitBytes: retries.bufferLimitBytes,
      perTryTimeoutMs: retries.perTryTimeoutMs,
    };
    return compose(
      [
        observeLayer(this.recorder, clock),
        respondLayer(name, this.deps.log),
        limitLayer(name, limits.maxInFlight, this.inFlight),
        deadlineLayer(timeoutMs, clock),
        admissionLayer(() => this.admission, clock),
        retryLayer(policy, this.retryBudget, this.recorder, clock, random),
        balanceLayer(name, () => this.balancer, this.hashKey, pool.maxConnections + limits.maxPendingPerEndpoint, clock, (endpoint, ex, latencyMs) =>
          this.feedback?.observe(endpoint, ex.outcome, latencyMs, ex.upstreamStatus, ex.upstreamOverloaded),
        ),
      ],
      forwardHttp,
    );
  }

  private async startFileSource(): Promise<void> {
    const path = this.config.endpointsFile;
    if (path === undefined) return;
    const source = new EndpointsFileSource(
      this.name,
      path,
      {
        updated: () => {
          if (this.fileSource === source) this.reconcile();
        },
        failed: () => this.deps.discoveryFailed(this.name, 'file'),
      },
      this.deps.log,
    );
    this.fileSource = source;
    await source.start();
  }

  /** Makes the endpoint set equal to static ∪ file, keeping objects whose address and pool settings stay. */
  private reconcile(): void {
    const wanted = new Map<string, { spec: EndpointSpec; sources: string[] }>();
    const add = (spec: EndpointSpec, source: string): void => {
      const seen = wanted.get(spec.address);
      if (seen === undefined) wanted.set(spec.address, { spec, sources: [source] });
      else seen.sources.push(source);
    };
    for (const spec of this.config.endpoints) add(spec, 'static');
    for (const spec of this.fileSource?.endpoints ?? []) add(spec, 'file');

    const options = upstreamOptions(this.config);
    const ewma = peakEwmaOptions(this.config.balancer);
    const now = this.deps.clock();
    const added: string[] = [];
    const removed: string[] = [];
    // Pool settings changed: a fresh pool, but the endpoint keeps its history.
    const carried = new Map<string, HttpEndpoint>();
    for (const [address, endpoint] of this.endpoints) {
      if (wanted.has(address) && sameUpstreamOptions(endpoint.upstream.options, options) && wanted.get(address)!.spec.identity === endpoint.spec.identity) continue;
      this.endpoints.delete(address);
      void endpoint.upstream.close();
      if (wanted.has(address)) carried.set(address, endpoint);
      else {
        removed.push(address);
        this.deps.observer.removeEndpoint(this.name, address);
      }
    }
    for (const [address, { spec, sources }] of wanted) {
      const existing = this.endpoints.get(address);
      this.sourcesOf.set(address, sources);
      if (existing !== undefined) {
        existing.spec = spec;
        continue;
      }
      const recorder = this.deps.observer.forEndpoint(this.name, address);
      const old = carried.get(address);
      const fresh = new Endpoint(spec, new HttpUpstream(spec, options, this.deps.tls), recorder, now, old?.stats, old?.load ?? new PeakEwma(ewma, now));
      if (old !== undefined) fresh.warmingSince = old.warmingSince;
      this.endpoints.set(address, fresh);
      if (old === undefined) added.push(address);
    }
    for (const address of removed) this.sourcesOf.delete(address);
    this.balancer.setEndpoints([...this.endpoints.values()]);
    this.feedback?.setEndpoints([...this.endpoints.values()]);
    this.healthChecker?.setTargets(this.probeTargets());
    if (added.length > 0 || removed.length > 0) {
      this.deps.log.info({ service: this.name, added, removed, endpoints: this.endpoints.size }, 'endpoints changed');
    }
  }
}


function round(n: number): number {
  return Math.round(n * 100) / 100;
}
