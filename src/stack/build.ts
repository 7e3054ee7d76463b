/**
 * The one shape of a service's data path, for outbound services and local
 * (inbound) services alike, outermost first:
 *
 *   [trace → access log] → observe → respond → [mark overload] → [limit] → [access] → [rate limit] → route
 *   route:  [route rate limit] → [header modifiers] → [mirror] → deadline → admission → [retry] → balance → [faults] → terminal
 *
 * The bracketed layers are present when the spec asks for them: outbound
 * services limit their in-flight requests and retry; local services mark
 * their overload answers for the calling host's meshd; routes, access rules,
 * rate limits, mirrors and faults come from the traffic policy. A service
 * without routes has one route: its defaults.
 */
import type { Clock, Random } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { Admission } from './admission.ts';
import { admissionLayer } from './admission.ts';
import type { AttemptPicker } from './attempt.ts';
import { deadlineLayer } from './deadline.ts';
import type { HashKeyReader } from '../balancer/create.ts';
import { compose, type Handler, type Layer } from './layer.ts';
import { balanceLayer, limitLayer, markOverloadLayer, observeLayer, respondLayer, type InFlightCount } from './layers.ts';
import type { EdgeRecorder, ServiceRecorder } from './observer.ts';
import { accessLogLayer, traceLayer, type ExchangeWitnesses } from './trace.ts';
import { retryLayer, type RetryPolicy } from './retry.ts';
import type { RetryBudget } from './retry-budget.ts';

/** The layers every request of a service passes, whichever route it takes. */
export interface ServiceLayersSpec {
  /** The service's name in logs and errors ("users", "local:web"). */
  readonly label: string;
  readonly recorder: ServiceRecorder;
  readonly log: Logger;
  readonly clock: Clock;
  readonly limit?: { readonly maxInFlight: number; readonly count: InFlightCount };
  readonly markOverload?: boolean;
  /** Access rules and the service's rate limit, as layers (routing/access-layer.ts, traffic/rate-limiter.ts). */
  readonly policy?: readonly Layer[];
  /** The dependency map every exchange is recorded on. */
  readonly edges?: EdgeRecorder;
  /** Counts requests that took a configured route, once their status is final (an error answer included). */
  readonly routeFinished?: (route: string, status: number) => void;
  /** Traces and access logs, and which way this service's hops go. */
  readonly witnesses?: { readonly to: ExchangeWitnesses; readonly kind: 'outbound' | 'inbound' };
}

/** The layers of one route: its deadline, retries, backend, and the filters it asks for. */
export interface RouteLayersSpec {
  readonly clock: Clock;
  readonly timeoutMs: number;
  /** The adaptive concurrency limit in force (read per request: it follows reloads); undefined: none. */
  readonly admission: () => Admission | undefined;
  readonly attempts: AttemptPicker;
  readonly hashKey: HashKeyReader | undefined;
  readonly retry?: { readonly policy: RetryPolicy; readonly budget: RetryBudget; readonly random: Random; readonly recorder: ServiceRecorder };
  /** Rate limit, header modifiers, mirror: before the deadline starts. */
  readonly filters?: readonly Layer[];
  /** Fault injection: after the endpoint is chosen. */
  readonly faults?: Layer;
}

export interface StackSpec extends ServiceLayersSpec, Omit<RouteLayersSpec, 'retry'> {
  readonly retry?: { readonly policy: RetryPolicy; readonly budget: RetryBudget; readonly random: Random };
}

/** A service with one route (its defaults): local services, and outbound services without routes. */
export function buildStack(spec: StackSpec, terminal: Handler): Handler {
  const { retry, ...rest } = spec;
  const route: RouteLayersSpec = retry === undefined ? rest : { ...rest, retry: { ...retry, recorder: spec.recorder } };
  return buildServiceLayers(spec, buildRouteLayers(route, terminal));
}

/** The service's outer layers around `route`, which picks and runs the request's route. */
export function buildServiceLayers(spec: ServiceLayersSpec, route: Handler): Handler {
  const graph = spec.edges === undefined ? undefined : { edges: spec.edges, service: spec.label };
  const layers: Layer[] = [];
  const w = spec.witnesses;
  if (w !== undefined) {
    layers.push(
      traceLayer(() => w.to.tracer(), w.kind, spec.label),
      accessLogLayer(w.to.log, spec.label, () => w.to.accessLog(), spec.clock, w.to.random),
    );
  }
  layers.push(observeLayer(spec.recorder, spec.clock, { graph, routeFinished: spec.routeFinished }), respondLayer(spec.label, spec.log));
  if (spec.markOverload === true) layers.push(markOverloadLayer);
  if (spec.limit !== undefined) layers.push(limitLayer(spec.label, spec.limit.maxInFlight, spec.limit.count));
  if (spec.policy !== undefined) layers.push(...spec.policy);
  return compose(layers, route);
}

export function buildRouteLayers(spec: RouteLayersSpec, terminal: Handler): Handler {
  const layers: Layer[] = [...(spec.filters ?? []), deadlineLayer(spec.timeoutMs, spec.clock), admissionLayer(spec.admission, spec.clock)];
  if (spec.retry !== undefined) layers.push(retryLayer(spec.retry.policy, spec.retry.budget, spec.retry.recorder, spec.clock, spec.retry.random));
  layers.push(balanceLayer(spec.attempts, spec.hashKey));
  if (spec.faults !== undefined) layers.push(spec.faults);
  return compose(layers, terminal);
}
