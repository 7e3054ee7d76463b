/**
 * Prometheus metrics; the only module that imports prom-client. It implements
 * the data path's observer: per-request numbers live in RequestSeries bound
 * once per service and endpoint, so recording a request is a few array
 * writes; prom-client formats them at scrape time.
 */
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { RequestSeriesSet, RouteCountSet, type Collector, type RouteCounts } from './request-series.ts';
import type { EndpointRecorder } from '../balancer/endpoint.ts';
import type { DecisionRecorder } from '../feedback/controller.ts';
import type { DataPathObserver, ServiceRecorder } from '../stack/observer.ts';
import type { TrafficRecorder } from '../service/traffic-policy.ts';
import type { AttemptCount } from '../service/runtime.ts';
import type { CanaryRecorder } from '../canary/canary-controller.ts';
import type { MirrorResult } from '../traffic/mirror.ts';
import { DecisionLog } from './decision-log.ts';
import type { SpanQueueRecorder } from '../tracing/span-queue.ts';

/**
 * Process metrics that are one process's facts, not amounts to add up over workers: the descriptor
 * limit is each process's own (summed, 3 processes of 20,000 read 60,000), and the start time is
 * the supervisor's (the oldest), which prom-client would leave out.
 */
const PER_PROCESS_AGGREGATOR: Readonly<Record<string, 'max' | 'min'>> = {
  meshd_process_max_fds: 'max',
  meshd_process_start_time_seconds: 'min',
};

/** Seconds; from 0.5 ms (a loopback hop) to 30 s (a long deadline). */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * With several workers, what the supervisor itself observes or decides: every worker reloads,
 * reads discovery files and watches certificates too, so their copies would count it again.
 */
const SUPERVISOR_OWNED: ReadonlySet<string> = new Set([
  'meshd_endpoints',
  'meshd_config_reloads_total',
  'meshd_discovery_errors_total',
  'meshd_discovery_updates_total',
  'meshd_discovery_staleness_seconds',
  'meshd_tls_rotations_total',
  'meshd_certificate_expiry_seconds',
]);

/**
 * With several workers, what only the workers count: the supervisor records the attempts their
 * samples report on its own endpoints (for its decisions), and samples flow only while a feedback
 * loop runs, so its copy would both repeat and miss some.
 */
const WORKER_OWNED: ReadonlySet<string> = new Set(['meshd_endpoint_attempts_total']);

/** prom-client's runtime gauges with a counter's suffix; `meshd_nodejs_active_handles{type}` and its kin carry the same numbers. */
const GAUGES_NAMED_TOTAL = ['meshd_nodejs_active_handles_total', 'meshd_nodejs_active_requests_total', 'meshd_nodejs_active_resources_total'];

/** Service label for requests whose Host named no configured service (bounded cardinality). */
export const UNKNOWN_SERVICE_LABEL = '_unknown';

export interface EndpointCount {
  service: string;
  state: string;
  count: number;
}

export class Metrics implements DataPathObserver, DecisionRecorder, TrafficRecorder, CanaryRecorder, SpanQueueRecorder {
  readonly registry = new Registry();
  /** The same decisions, kept in order for /debug/state and the dashboard. */
  readonly decisionLog = new DecisionLog();
  private readonly series = new RequestSeriesSet(DURATION_BUCKETS);
  private readonly resets: Counter<'service' | 'side'>;
  private readonly reloads: Counter<'result'>;
  private readonly retries: Counter<'service' | 'reason'>;
  private readonly budgetExhausted: Counter<'service'>;
  private readonly tcpConnections: Counter<'service' | 'endpoint' | 'result'>;
  private readonly decisions: Counter<'service' | 'decision' | 'reason'>;
  private readonly limits: Gauge<'service'>;
  private readonly discoveryErrors: Counter<'service' | 'source'>;
  private readonly discoveryUpdates: Counter<'service' | 'source' | 'result'>;
  private staleness: () => { service: string; seconds: number }[] = () => [];
  private readonly connectionsRefused: Counter<'listener'>;
  private readonly clientErrors: Counter<'listener' | 'code'>;
  private endpointCounts: () => EndpointCount[] = () => [];
  private attemptCounts: () => AttemptCount[] = () => [];
  private certificate: (() => { identity: string; notAfter: Date }) | undefined;
  private readonly handshakeErrors: Counter<'listener' | 'reason'>;
  private readonly authorizations: Counter<'service' | 'result'>;
  private readonly rotations: Counter<'result'>;
  private readonly handshakes: Counter<'listener' | 'resumed'>;
  private readonly rateLimits: Counter<'service' | 'route'>;
  private readonly faults: Counter<'service' | 'fault' | 'action'>;
  private readonly mirrors: Counter<'service' | 'result'>;
  private readonly routes = new RouteCountSet();
  private readonly canaryWeights: Gauge<'service'>;
  private readonly canaryPhases: Gauge<'service' | 'phase'>;
  private readonly canaryDecisions: Counter<'service' | 'action' | 'reason'>;
  private readonly spanResults: Counter<'result'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'meshd_' });
    // Gauges named like counters (promtool flags them); each equals the sum of its by-type gauge.
    for (const name of GAUGES_NAMED_TOTAL) this.registry.removeSingleMetric(name);
    const registers = [this.registry];
    const register = (collector: Collector): void => {
      // A collector honours prom-client's metric contract (name, get() in its format) without being one of its classes.
      this.registry.registerMetric(collector as unknown as Metric);
    };
    register(
      this.series.requestsCollector('meshd_requests_total', 'Requests answered, by service, endpoint ("none" when no endpoint was reached) and status class.'),
    );
    register(this.series.durationCollector('meshd_request_duration_seconds', 'Time from request arrival to the end of the response.'));
    register(this.series.inFlightCollector('meshd_inflight_requests', 'Requests in progress.'));
    // Per attempt, where meshd_requests_total is per exchange: a failure a retry hid still shows on its endpoint.
    register({
      name: 'meshd_endpoint_attempts_total',
      get: () =>
        Promise.resolve({
          name: 'meshd_endpoint_attempts_total',
          help: 'Attempts sent to each endpoint, by outcome (retries, WebSocket handshakes and TCP connects included).',
          type: 'counter',
          aggregator: 'sum',
          values: this.attemptCounts().map(({ service, endpoint, outcome, count }) => ({ value: count, labels: { service, endpoint, outcome } })),
        }),
    });
    this.resets = new Counter({
      name: 'meshd_resets_total',
      help: 'Exchanges cut short: the caller went away (client) or the response stream broke after it started (upstream).',
      labelNames: ['service', 'side'],
      registers,
    });
    this.retries = new Counter({
      name: 'meshd_retries_total',
      help: 'Retries sent, by the status or error that caused them.',
      labelNames: ['service', 'reason'],
      registers,
    });
    this.budgetExhausted = new Counter({
      name: 'meshd_retry_budget_exhausted_total',
      help: 'Retries not sent because the retry budget was spent.',
      labelNames: ['service'],
      registers,
    });
    this.tcpConnections = new Counter({
      name: 'meshd_tcp_connections_total',
      help: 'TCP connections through service listeners, by endpoint and result.',
      labelNames: ['service', 'endpoint', 'result'],
      registers,
    });
    this.decisions = new Counter({
      name: 'meshd_feedback_decisions_total',
      help: 'Feedback-loop decisions (eject, eject_skipped, return, panic, limit_change, shed) by reason.',
      labelNames: ['service', 'decision', 'reason'],
      registers,
    });
    this.rateLimits = new Counter({
      name: 'meshd_rate_limited_total',
      help: 'Requests refused with 429 by a local rate limit, by service and route (empty: the service-wide limit).',
      labelNames: ['service', 'route'],
      registers,
    });
    this.faults = new Counter({
      name: 'meshd_faults_injected_total',
      help: 'Fault injections applied to attempts, by fault name and action (delay, abort, reset).',
      labelNames: ['service', 'fault', 'action'],
      registers,
    });
    this.mirrors = new Counter({
      name: 'meshd_mirror_requests_total',
      help: 'Mirrored requests by result: completed, failed, skipped_busy, skipped_body_too_large.',
      labelNames: ['service', 'result'],
      registers,
    });
    register(this.routes.collector('meshd_route_requests_total', 'Requests that took a configured route, by the status class the caller got.'));
    this.canaryWeights = new Gauge({
      name: 'meshd_canary_weight_percent',
      help: "Share of a service's default traffic sent to its canary subset.",
      labelNames: ['service'],
      registers,
      aggregator: 'max',
    });
    this.canaryPhases = new Gauge({
      name: 'meshd_canary_phase',
      help: 'The phase a canary is in (1 for the current one): progressing, paused, rolled_back, promoted.',
      labelNames: ['service', 'phase'],
      registers,
      aggregator: 'max',
    });
    this.canaryDecisions = new Counter({
      name: 'meshd_canary_decisions_total',
      help: 'Canary steps taken (advance, rollback, promote, and operator commands), by reason.',
      labelNames: ['service', 'action', 'reason'],
      registers,
    });
    this.spanResults = new Counter({
      name: 'meshd_tracing_spans_total',
      help: 'Trace spans handed to the OTLP exporter, by result: exported, dropped (queue full), failed (the collector refused or did not answer).',
      labelNames: ['result'],
      registers,
    });
    this.limits = new Gauge({ name: 'meshd_concurrency_limit', help: 'Adaptive concurrency limit per service.', labelNames: ['service'], registers });
    this.reloads = new Counter({ name: 'meshd_config_reloads_total', help: 'Config reloads by result.', labelNames: ['result'], registers });
    this.discoveryErrors = new Counter({
      name: 'meshd_discovery_errors_total',
      help: 'Discovery reads rejected (the last good endpoints were kept).',
      labelNames: ['service', 'source'],
      registers,
    });
    this.discoveryUpdates = new Counter({
      name: 'meshd_discovery_updates_total',
      help: 'Answers of discovery sources by result: changed, unchanged, empty_held (an empty answer held back), error.',
      labelNames: ['service', 'source', 'result'],
      registers,
    });
    const staleness = (): ReturnType<Metrics['staleness']> => this.staleness();
    new Gauge({
      name: 'meshd_discovery_staleness_seconds',
      help: "Seconds since a service's least recently successful discovery source last answered.",
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        for (const { service, seconds } of staleness()) this.labels(service).set(seconds);
      },
    });
    this.connectionsRefused = new Counter({
      name: 'meshd_connections_refused_total',
      help: 'Connections closed at accept: a listener at its connection cap, or a source outside its allowFrom (listener *_source).',
      labelNames: ['listener'],
      registers,
    });
    this.clientErrors = new Counter({
      name: 'meshd_client_errors_total',
      help: 'Malformed requests refused before routing, by listener and error code.',
      labelNames: ['listener', 'code'],
      registers,
    });
    const endpointCounts = (): ReturnType<Metrics['endpointCounts']> => this.endpointCounts();
    new Gauge({
      name: 'meshd_endpoints',
      help: 'Endpoints per service and state.',
      labelNames: ['service', 'state'],
      registers,
      collect() {
        this.reset();
        for (const { service, state, count } of endpointCounts()) this.labels(service, state).set(count);
      },
    });
    for (const result of ['success', 'failure']) this.reloads.labels(result).inc(0);
    this.handshakeErrors = new Counter({
      name: 'meshd_tls_handshake_errors_total',
      help: 'Refused TLS handshakes by listener and reason.',
      labelNames: ['listener', 'reason'],
      registers,
    });
    this.authorizations = new Counter({
      name: 'meshd_authorization_total',
      help: 'Inbound authorization decisions by local service.',
      labelNames: ['service', 'result'],
      registers,
    });
    this.handshakes = new Counter({
      name: 'meshd_tls_handshakes_total',
      help: 'Completed TLS handshakes by listener; resumed="true" when a session was reused.',
      labelNames: ['listener', 'resumed'],
      registers,
    });
    this.rotations = new Counter({
      name: 'meshd_tls_rotations_total',
      help: 'Certificate reloads applied (success) or rejected (failure).',
      labelNames: ['result'],
      registers,
    });
    const certificate = (): ReturnType<NonNullable<Metrics['certificate']>> | undefined => this.certificate?.();
    new Gauge({
      name: 'meshd_certificate_expiry_seconds',
      help: "Seconds until this host's certificate expires (negative: expired).",
      labelNames: ['identity'],
      registers,
      collect() {
        this.reset();
        const c = certificate();
        if (c !== undefined) this.labels(c.identity).set(Math.floor((c.notAfter.getTime() - Date.now()) / 1000));
      },
    });
  }

  setCertificateSource(source: () => { identity: string; notAfter: Date }): void {
    this.certificate = source;
  }

  handshakeError(listener: string, reason: string): void {
    this.handshakeErrors.labels(listener, reason).inc();
  }

  handshake(listener: string, resumed: boolean): void {
    this.handshakes.labels(listener, resumed ? 'true' : 'false').inc();
  }

  spans(result: 'exported' | 'dropped' | 'failed', count: number): void {
    this.spanResults.labels(result).inc(count);
  }

  rateLimited(service: string, route: string): void {
    this.rateLimits.labels(service, route).inc();
  }

  faultInjected(service: string, fault: string, action: 'delay' | 'abort' | 'reset'): void {
    this.faults.labels(service, fault, action).inc();
  }

  mirrored(service: string, result: MirrorResult): void {
    this.mirrors.labels(service, result).inc();
  }

  routeCounts(service: string, route: string): RouteCounts {
    return this.routes.bind(service, route);
  }

  canaryWeight(service: string, weight: number, phase: string): void {
    this.canaryWeights.labels(service).set(weight);
    for (const p of ['progressing', 'paused', 'rolled_back', 'promoted']) this.canaryPhases.labels(service, p).set(p === phase ? 1 : 0);
  }

  canaryDecision(service: string, action: string, reason: string): void {
    this.canaryDecisions.labels(service, action, reason).inc();
    this.decisionLog.record(service, `canary_${action}`, reason);
  }

  authorization(service: string, allowed: boolean): void {
    this.authorizations.labels(service, allowed ? 'allowed' : 'denied').inc();
  }

  tlsRotation(ok: boolean): void {
    this.rotations.labels(ok ? 'success' : 'failure').inc();
  }

  /** Supplies the endpoint counts read at each scrape. */
  setEndpointCountSource(source: () => EndpointCount[]): void {
    this.endpointCounts = source;
  }

  /** Supplies every endpoint's attempts by outcome, read at each scrape. */
  setAttemptCountSource(source: () => AttemptCount[]): void {
    this.attemptCounts = source;
  }

  forService(service: string): ServiceRecorder {
    const inflight = this.series.inFlightCell(service);
    const finish = this.series.bind(service, 'none');
    const clientResets = this.resets.labels(service, 'client');
    const upstreamResets = this.resets.labels(service, 'upstream');
    const exhausted = this.budgetExhausted.labels(service);
    return {
      started: () => inflight.value++,
      ended: () => inflight.value--,
      finishedWithoutEndpoint: (status, seconds) => finish.finished(status, seconds),
      reset: (side) => (side === 'client' ? clientResets : upstreamResets).inc(),
      retried: (reason) => this.retries.labels(service, reason).inc(),
      budgetExhausted: () => exhausted.inc(),
      tcpConnection: (endpoint, result) => this.tcpConnections.labels(service, endpoint, result).inc(),
    };
  }

  forEndpoint(service: string, endpoint: string): EndpointRecorder {
    return this.series.bind(service, endpoint);
  }

  removeEndpoint(service: string, endpoint: string): void {
    this.series.remove(service, endpoint);
  }

  decision(service: string, decision: string, reason: string, endpoint?: string): void {
    this.decisions.labels(service, decision, reason).inc();
    this.decisionLog.record(service, decision, reason, endpoint);
  }

  concurrencyLimit(service: string, limit: number): void {
    this.limits.labels(service).set(limit);
  }

  configReloaded(success: boolean): void {
    this.reloads.labels(success ? 'success' : 'failure').inc();
  }

  /** One answer of a discovery source, by result; a failure is also a discovery error. */
  discoveryUpdate(service: string, source: string, result: string): void {
    this.discoveryUpdates.labels(service, source, result).inc();
    if (result === 'error') this.discoveryErrors.labels(service, source).inc();
  }

  setDiscoveryStalenessSource(source: () => { service: string; seconds: number }[]): void {
    this.staleness = source;
  }

  /** Counts a rejected discovery read. */
  discoveryFailed(service: string, source: string): void {
    this.discoveryErrors.labels(service, source).inc();
  }

  connectionRefused(listener: string): void {
    this.connectionsRefused.labels(listener).inc();
  }

  clientError(listener: string, code: string): void {
    this.clientErrors.labels(listener, code).inc();
  }

  /** Prometheus text exposition. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** This process's metrics as data, for the supervisor to aggregate. */
  json(): Promise<unknown> {
    return this.registry.getMetricsAsJSON();
  }

  /** The supervisor's exposition: its own metrics plus its workers' (counters, histograms and in-flight summed). */
  async renderAggregated(workers: readonly unknown[]): Promise<{ contentType: string; body: string }> {
    type MetricList = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;
    const own = (await this.registry.getMetricsAsJSON()).filter((m) => !WORKER_OWNED.has(m.name));
    const theirs = workers.filter((w): w is MetricList => Array.isArray(w)).map((list) => list.filter((m) => !SUPERVISOR_OWNED.has(m.name)));
    const lists = [own, ...theirs].map((list) =>
      list.map((m) => (m.name in PER_PROCESS_AGGREGATOR ? { ...m, aggregator: PER_PROCESS_AGGREGATOR[m.name] } : m)),
    );
    const merged = AggregatorRegistry.aggregate(lists);
    return { contentType: merged.contentType, body: await merged.metrics() };
  }
}
