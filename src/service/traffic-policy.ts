/**
 * A service's traffic policy made runnable, once per config: its routes
 * (each with its own deadline, retries, backend split, filters and rate
 * limit), its access rules and service rate limit, and the composed
 * handler. The WebSocket and TCP paths ask it for the same decisions the
 * HTTP stack takes (route, access, rate limit, backend), so a policy holds
 * on every protocol path.
 */
import type { HashKeyReader } from '../balancer/create.ts';
import type { Clock, Random } from '../clock.ts';
import type { HeaderModifier, RouteRule, ServiceConfig } from '../config/types.ts';
import type { Logger } from '../log.ts';
import { forwardHttp } from '../proxy/http-forwarder.ts';
import { accessLayer, accessRefusal, compileAccess, type AccessCheck, type AccessRecorder } from '../routing/access.ts';
import { headerModifierLayer } from '../routing/header-modifier.ts';
import { RouteTable, type RouteRequest } from '../routing/route-table.ts';
import { redirectHandler, redirectLocation, rewrittenHead, urlRewriteLayer } from '../routing/url-rewrite.ts';
import type { Admission } from '../stack/admission.ts';
import type { AttemptPicker } from '../stack/attempt.ts';
import type { RequestHead } from '../stack/exchange.ts';
import { buildRouteLayers, buildServiceLayers } from '../stack/build.ts';
import type { Handler, Layer } from '../stack/layer.ts';
import type { InFlightCount } from '../stack/layers.ts';
import type { EdgeRecorder, ServiceRecorder } from '../stack/observer.ts';
import type { ExchangeWitnesses } from '../stack/trace.ts';
import type { RetryPolicy } from '../stack/retry.ts';
import type { RetryBudget } from '../stack/retry-budget.ts';
import { subsetKey, WeightedSplit, type Subsets } from '../traffic/backends.ts';
import { faultLayer } from '../traffic/fault-layer.ts';
import type { FaultRecorder, FaultRegistry } from '../traffic/faults.ts';
import { mirrorLayer, type MirrorRecorder } from '../traffic/mirror.ts';
import { rateLimitLayer, rateLimitRefusal, type RateLimiter, type RateLimiters, type RateLimitRecorder } from '../traffic/rate-limiter.ts';
import type { HttpEndpoint } from './endpoint-set.ts';
import { MeshError } from '../errors.ts';

/** Everything the data path reports about traffic policy (admin/metrics.ts implements it). */
export interface TrafficRecorder extends RateLimitRecorder, FaultRecorder, MirrorRecorder, AccessRecorder {
  /** The counts of requests that took `route` of `service`, bound once per route. */
  routeCounts(service: string, route: string): RouteCounts;
}

export interface RouteCounts {
  finished(status: number): void;
}

export interface TrafficPolicyDeps {
  readonly config: ServiceConfig;
  readonly clock: Clock;
  readonly random: Random;
  readonly log: Logger;
  readonly recorder: ServiceRecorder;
  readonly traffic: TrafficRecorder;
  readonly faults: FaultRegistry;
  readonly subsets: Subsets<HttpEndpoint>;
  /** Where requests go that no route sends elsewhere: every endpoint, or the canary's split. */
  readonly defaultBackend: AttemptPicker;
  readonly admission: () => Admission | undefined;
  readonly hashKey: HashKeyReader | undefined;
  readonly retryBudget: RetryBudget;
  readonly inFlight: InFlightCount;
  /** The service's limiters, kept across policy rebuilds (an unchanged limit keeps its buckets). */
  readonly limiters: RateLimiters;
  readonly edges?: EdgeRecorder | undefined;
  readonly witnesses?: ExchangeWitnesses | undefined;
}

interface CompiledRoute {
  readonly rule: RouteRule | undefined;
  readonly handler: Handler;
  readonly backend: AttemptPicker;
  readonly limiter: RateLimiter | undefined;
}

/** A route table's pick (or the defaults), as it is: nothing is allocated per request. */
interface Selected {
  readonly value: CompiledRoute;
  /** What the route's PathPrefix match matched ("/" without one). */
  readonly prefix: string;
}

/** Where an admitted WebSocket handshake or TCP connection goes; `head`: the handshake as URLRewrite made it. */
export interface Admitted {
  readonly backend: AttemptPicker;
  readonly route: string | undefined;
  readonly head?: RequestHead | undefined;
  /** The route's RequestHeaderModifier, for a handshake (the HTTP path applies it as a layer). */
  readonly requestHeaders?: HeaderModifier | undefined;
}
export interface Refused {
  readonly refused: MeshError;
  /** The route that refused it (its rate limit, or an answer of its own); undefined: refused before routing. */
  readonly route?: string | undefined;
}
/** A handshake whose route answers with RequestRedirect. */
export interface Redirected {
  readonly redirect: { readonly status: number; readonly location: string };
  readonly route: string | undefined;
}
/** What a WebSocket handshake or a TCP connection is allowed, and where it goes. */
export type Admittance = Admitted | Refused | Redirected;

export class TrafficPolicy {
  readonly handler: Handler;
  /** The label sets of every subset the policy names (the others may be dropped). */
  readonly subsetKeys = new Set<string>();
  private readonly deps: TrafficPolicyDeps;
  private readonly table: RouteTable<CompiledRoute>;
  private readonly fallback: CompiledRoute;
  private readonly unrouted: Selected;
  private readonly access: AccessCheck | undefined;
  private readonly limiter: RateLimiter | undefined;
  private readonly routeCounts = new Map<string, RouteCounts>();

  constructor(deps: TrafficPolicyDeps) {
    this.deps = deps;
    const { config, clock, traffic } = deps;
    this.access = compileAccess(config.access);
    this.limiter = config.rateLimit === undefined ? undefined : deps.limiters.get('', config.rateLimit);
    this.subsetKeys.add(subsetKey({}));
    this.table = new RouteTable(config.routes, (rule) => this.compile(rule));
    this.fallback = this.compile(undefined);
    this.unrouted = { value: this.fallback, prefix: '/' };
    const policy: Layer[] = [];
    if (this.access !== undefined) policy.push(accessLayer(this.access, config.name, traffic));
    if (this.limiter !== undefined) policy.push(rateLimitLayer(this.limiter, config.name, undefined, traffic));
    this.handler = buildServiceLayers(
      {
        label: config.name,
        recorder: deps.recorder,
        log: deps.log,
        clock,
        limit: { maxInFlight: config.limits.maxInFlight, count: deps.inFlight },
        policy,
        routeFinished: (route, status) => this.routeCounts.get(route)?.finished(status),
        ...(deps.edges === undefined ? {} : { edges: deps.edges }),
        ...(deps.witnesses === undefined ? {} : { witnesses: { to: deps.witnesses, kind: 'outbound' as const } }),
      },
      (ex) => {
        // The exchange is the route request (its head and verified caller).
        const selected = this.select(ex);
        const route = selected.value;
        // Counted by the observe layer once the status is final: a 429 or 502 of this route is not a 2xx.
        if (route.rule !== undefined) ex.route = route.rule.name;
        ex.routePrefix = selected.prefix;
        return route.handler(ex);
      },
    );
  }

  /** Counts an answer against its route, for what the HTTP path's observe layer does not see (WebSocket handshakes). */
  routeFinished(route: string | undefined, status: number): void {
    if (route !== undefined) this.routeCounts.get(route)?.finished(status);
  }

  /** The route a request takes (its rule undefined: the service's defaults). */
  private select(request: RouteRequest): Selected {
    return this.table.select(request) ?? this.unrouted;
  }

  /** The decisions of the HTTP stack for a WebSocket handshake (`request`) or a TCP connection (undefined). */
  admit(request: undefined): Admitted | Refused;
  admit(request: RouteRequest): Admittance;
  admit(request: RouteRequest | undefined): Admittance {
    const { config, traffic } = this.deps;
    const caller = request?.caller;
    const target = request === undefined ? undefined : { method: request.head.method, target: request.head.path };
    const forbidden = accessRefusal(this.access, target, caller, config.name, traffic);
    if (forbidden !== undefined) return { refused: forbidden };
    const { value: route, prefix } = request === undefined ? this.unrouted : this.select(request);
    const rule = route.rule;
    if (rule?.answer !== undefined) return { refused: answerError(rule.answer, config.name, rule.name), route: rule.name };
    const limited =
      rateLimitRefusal(this.limiter, caller, config.name, undefined, traffic) ?? rateLimitRefusal(route.limiter, caller, config.name, rule?.name, traffic);
    if (limited !== undefined) return { refused: limited, route: rule?.name };
    // A handshake is an HTTP request: its route may redirect it or rewrite its path and Host.
    if (request !== undefined && rule?.redirect !== undefined) {
      return { redirect: { status: rule.redirect.statusCode, location: redirectLocation(rule.redirect, request.head, prefix, config.name) }, route: rule.name };
    }
    const head = request !== undefined && rule?.rewrite !== undefined ? rewrittenHead(request.head, rule.rewrite, prefix) : undefined;
    return { backend: route.backend, route: rule?.name, head, requestHeaders: rule?.requestHeaders };
  }

  state(): unknown {
    return {
      routes: this.deps.config.routes.map((r) => r.name),
      rateLimit: this.limiter?.state(),
      access: this.deps.config.access.length,
    };
  }

  private compile(rule: RouteRule | undefined): CompiledRoute {
    const { config, clock, random, log, traffic, faults, subsets } = this.deps;
    if (rule !== undefined) this.routeCounts.set(rule.name, traffic.routeCounts(config.name, rule.name));
    if (rule?.answer !== undefined) {
      const answer = rule.answer;
      return { rule, handler: () => Promise.reject(answerError(answer, config.name, rule.name)), backend: this.deps.defaultBackend, limiter: undefined };
    }
    const backend = this.backendOf(rule);
    const filters: Layer[] = [];
    const limiter = rule?.rateLimit === undefined ? undefined : this.deps.limiters.get(`route:${rule.name}`, rule.rateLimit);
    if (limiter !== undefined) filters.push(rateLimitLayer(limiter, config.name, rule?.name, traffic));
    if (rule?.rewrite !== undefined) filters.push(urlRewriteLayer(rule.rewrite));
    if (rule?.requestHeaders !== undefined || rule?.responseHeaders !== undefined) filters.push(headerModifierLayer(rule.requestHeaders, rule.responseHeaders));
    if (rule?.redirect !== undefined) {
      // Answered here: its rate limit and response header modifier apply; nothing is forwarded.
      const answer = redirectHandler(rule.redirect, config.name);
      return { rule, handler: filters.reduceRight<Handler>((next, layer) => layer(next), answer), backend, limiter };
    }
    if (rule?.mirror !== undefined) {
      this.subsetKeys.add(subsetKey(rule.mirror.subset));
      filters.push(
        mirrorLayer({
          service: config.name,
          percent: rule.mirror.percent,
          target: subsets.get(rule.mirror.subset),
          timeoutMs: rule.timeoutMs ?? config.timeoutMs,
          bufferLimitBytes: config.retries.bufferLimitBytes,
          maxInFlight: MIRRORS_IN_FLIGHT,
          clock,
          random,
          recorder: traffic,
          log,
        }),
      );
    }
    const handler = buildRouteLayers(
      {
        clock,
        timeoutMs: rule?.timeoutMs ?? config.timeoutMs,
        admission: this.deps.admission,
        attempts: backend,
        hashKey: this.deps.hashKey,
        retry: { policy: this.retryPolicy(rule), budget: this.deps.retryBudget, random, recorder: this.deps.recorder },
        filters,
        faults: faultLayer(config.name, faults, traffic),
      },
      forwardHttp,
    );
    return { rule, handler, backend, limiter };
  }

  private backendOf(rule: RouteRule | undefined): AttemptPicker {
    const { config, random, subsets } = this.deps;
    if (rule === undefined || rule.backendRefs.length === 0) return this.deps.defaultBackend;
    for (const b of rule.backendRefs) this.subsetKeys.add(subsetKey(b.subset));
    if (rule.backendRefs.length === 1) return subsets.get((rule.backendRefs[0] as { subset: Record<string, string> }).subset);
    return new WeightedSplit(
      config.name,
      rule.backendRefs.map((b) => ({ source: subsets.get(b.subset), weight: () => b.weight })),
      random,
    );
  }

  private retryPolicy(rule: RouteRule | undefined): RetryPolicy {
    const { retries } = this.deps.config;
    const retry = rule?.retry;
    return {
      attempts: retry?.attempts ?? retries.attempts,
      retryOn: new Set(retry?.codes ?? retries.retryOn),
      retryOnGrpc: new Set(retries.retryOnGrpc),
      backoffBaseMs: retry?.backoffMs ?? retries.backoffBaseMs,
      backoffMaxMs: Math.max(retries.backoffMaxMs, retry?.backoffMs ?? 0),
      bufferLimitBytes: retries.bufferLimitBytes,
      perTryTimeoutMs: rule?.backendTimeoutMs ?? retries.perTryTimeoutMs,
    };
  }
}

/** The answer of a rule meshd added itself (Gateway API: 404 when nothing matches, 500 without backends). */
function answerError(answer: 'no_route' | 'no_backend', service: string, rule: string): MeshError {
  return answer === 'no_route'
    ? new MeshError(answer, `no HTTPRoute rule of "${service}" matches this request`)
    : new MeshError(answer, `route "${rule}" has no backends`);
}

/** Mirrored requests one route may have in flight; more are skipped (and counted), never queued. */
const MIRRORS_IN_FLIGHT = 256;
