/**
 * The small layers of a service's stack (stack/build.ts puts them in order):
 * observe, respond, limit, mark overload, balance; deadline, admission and
 * retry have modules of their own. Each does one job.
 */
import type { Clock } from '../clock.ts';
import { OVERLOADED_HEADER } from '../protocol/fields.ts';
import type { AttemptPicker } from './attempt.ts';
import type { HashKeyReader } from '../balancer/create.ts';
import { MeshError, toMeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Layer } from './layer.ts';
import type { EdgeRecorder, ServiceRecorder } from './observer.ts';
import { respondError } from './respond.ts';
import { classifiedStatus } from './trace.ts';

/** Where else an exchange's final status is reported besides its endpoint (or service). */
export interface ObserveTargets {
  /** The dependency map. */
  readonly graph?: { readonly edges: EdgeRecorder; readonly service: string } | undefined;
  /** Requests that took a configured route (ex.route), counted by the status the caller got. */
  readonly routeFinished?: ((route: string, status: number) => void) | undefined;
}

/** Counts the request and records its status and duration against its endpoint (or the service), its route, and on the dependency map. */
export function observeLayer(recorder: ServiceRecorder, clock: Clock, targets: ObserveTargets = {}): Layer {
  const { graph, routeFinished } = targets;
  return (next) => async (ex) => {
    recorder.started();
    try {
      await next(ex);
    } finally {
      recorder.ended();
      const seconds = (clock() - ex.startedAt) / 1000;
      const { attempt, response } = ex;
      const status = classifiedStatus(ex);
      if (attempt.endpoint === undefined) recorder.finishedWithoutEndpoint(status, seconds);
      else attempt.endpoint.recorder.finished(status, seconds);
      if (ex.route !== undefined) routeFinished?.(ex.route, status);
      graph?.edges.exchange(
        ex.caller ?? ex.head.remoteAddress ?? 'unknown',
        graph.service,
        attempt.endpoint?.address,
        status >= 500 || status === 0,
        seconds,
        ex.head.field('content-type')?.startsWith('application/grpc') === true ? 'grpc' : 'http',
      );
      if (attempt.outcome === 'client_abort') recorder.reset('client');
      // Not ended after the status line went out: the stream was cut.
      else if (response.started && !response.ended) recorder.reset('upstream');
    }
  };
}

/** Turns a failure into meshd's error response; the single place errors reach the caller. */
export function respondLayer(service: string, log: Logger): Layer {
  return (next) => async (ex) => {
    try {
      await next(ex);
    } catch (thrown) {
      const err = toMeshError(thrown);
      ex.errorCode = err.code;
      // Shed by the limit or the adaptive concurrency limiter: the feedback loop decided this answer.
      if (err.code === 'overloaded') ex.span?.event('meshd.shed', { reason: err.message });
      const fields = {
        service,
        route: ex.route,
        endpoint: ex.attempt.endpoint?.address,
        code: err.code,
        outcome: ex.attempt.outcome,
        cause: causeText(err),
        // An injected fault is named, so that no one takes it for a real failure.
        fault: ex.attempt.fault,
      };
      if (err.code === 'internal') log.error({ ...fields, err: thrown }, 'request failed');
      else if (ex.attempt.outcome !== 'client_abort') log.warn(fields, err.message);
      respondError(ex.response, { method: ex.head.method, contentType: ex.head.field('content-type') }, err);
    }
  };
}

function causeText(err: MeshError): string | undefined {
  const cause = err.cause as { code?: string; message?: string } | undefined;
  if (cause === undefined) return undefined;
  return cause.code ?? cause.message;
}

/** Picks an endpoint and holds the attempt on it: its in-flight place, then its outcome and latency. */
export function balanceLayer(attempts: AttemptPicker, hashKey: HashKeyReader | undefined): Layer {
  return (next) => async (ex) => {
    const lease = attempts.begin(hashKey?.(ex.head), ex.avoid);
    const attempt = ex.attempt;
    attempt.endpoint = lease.endpoint;
    if (ex.span !== undefined) {
      const passedOver = attempts.unavailable?.() ?? 0;
      if (passedOver > 0) ex.span.event('meshd.ejected_endpoints_avoided', { count: passedOver, endpoint: lease.endpoint.address });
    }
    try {
      await next(ex);
    } finally {
      lease.finish(attempt.outcome, attempt.upstreamStatus, attempt.upstreamOverloaded);
    }
  };
}

/** Marks meshd's own overload answers of a local service, so that the calling host's meshd backs off this host. */
export const markOverloadLayer: Layer = (next) => async (ex) => {
  try {
    await next(ex);
  } catch (err) {
    if (err instanceof MeshError && err.code === 'overloaded' && !ex.response.started) ex.response.setField(OVERLOADED_HEADER, '1');
    throw err;
  }
};

/** Mutable count shared by a service's stacks across reloads. */
export interface InFlightCount {
  value: number;
}

/** Caps the requests a service has in flight (a circuit breaker): excess gets a fast 503. */
export function limitLayer(service: string, maxInFlight: number, count: InFlightCount): Layer {
  return (next) => async (ex) => {
    if (count.value >= maxInFlight) {
      throw new MeshError('overloaded', `service "${service}" is at its limit of ${maxInFlight} requests in flight`, { retryAfterSeconds: 1 });
    }
    count.value++;
    try {
      await next(ex);
    } finally {
      count.value--;
    }
  };
}
