/**
 * The layers of a service's outbound stack, outermost first:
 * observe → respond → limit → deadline (deadline.ts) → retry (retry.ts) → balance → (proxy).
 * Each does one job.
 */
import type { Balancer } from '../balancer/balancer.ts';
import type { Endpoint } from '../balancer/endpoint.ts';
import type { Clock } from '../clock.ts';
import { MeshError, toMeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Exchange } from './exchange.ts';
import type { Layer } from './layer.ts';
import type { ServiceRecorder } from './observer.ts';
import { sendError } from './respond.ts';

/** Counts the request and records its status and duration against its endpoint (or the service). */
export function observeLayer(recorder: ServiceRecorder, clock: Clock): Layer {
  return (next) => async (ex) => {
    recorder.started();
    try {
      await next(ex);
    } finally {
      recorder.ended();
      const seconds = (clock() - ex.startedAt) / 1000;
      // 499: the caller went away before a response (nginx's convention).
      const status = ex.outcome === 'client_abort' && !ex.res.headersSent ? 499 : ex.res.statusCode;
      if (ex.endpoint === undefined) recorder.finishedWithoutEndpoint(status, seconds);
      else ex.endpoint.recorder.finished(status, seconds);
      if (ex.outcome === 'client_abort') recorder.reset('client');
      // end() not called after headers went out: the stream was cut (finish may lag behind end).
      else if (ex.res.headersSent && !ex.res.writableEnded) recorder.reset('upstream');
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
      const fields = { service, endpoint: ex.endpoint?.address, code: err.code, outcome: ex.outcome, cause: causeText(err) };
      if (err.code === 'internal') log.error({ ...fields, err: thrown }, 'request failed');
      else if (ex.outcome !== 'client_abort') log.warn(fields, err.message);
      sendError(ex.res, err);
    }
  };
}

function causeText(err: MeshError): string | undefined {
  const cause = err.cause as { code?: string; message?: string } | undefined;
  if (cause === undefined) return undefined;
  return cause.code ?? cause.message;
}

/** Picks an endpoint, and accounts its in-flight load and the attempt's outcome and latency. */
/** Where the balance layer reports each attempt (the service's feedback loop). */
export type AttemptObserver = (endpoint: Endpoint, ex: Exchange, latencyMs: number) => void;

export function balanceLayer(
  service: string,
  balancer: () => Balancer,
  hashKey: ((headers: Exchange['req']['headers']) => string | undefined) | undefined,
  endpointCapacity: number,
  clock: Clock,
  observeAttempt: AttemptObserver,
): Layer {
  return (next) => async (ex) => {
    const now = clock();
    const key = hashKey?.(ex.req.headers);
    let endpoint = balancer().pick(now, key);
    // A retry goes elsewhere when it can, and a full endpoint is passed over.
    for (let i = 0; i < 3 && endpoint !== undefined && (endpoint === ex.avoid || endpoint.inFlight >= endpointCapacity); i++) {
      endpoint = balancer().pick(now, key) ?? endpoint;
    }
    if (endpoint === undefined) {
      throw new MeshError('no_endpoints', `service "${service}" has no available endpoints`, { retryAfterSeconds: 1 });
    }
    if (endpoint.inFlight >= endpointCapacity) {
      throw new MeshError('overloaded', `every endpoint of "${service}" is at its limit of ${endpointCapacity} requests in flight`, { retryAfterSeconds: 1 });
    }
    ex.endpoint = endpoint;
    ex.upstreamStatus = 0;
    ex.upstreamOverloaded = false;
    endpoint.inFlight++;
    const started = clock();
    try {
      await next(ex);
    } finally {
      endpoint.inFlight--;
      const now = clock();
      endpoint.record(ex.outcome, now - started, now);
      observeAttempt(endpoint, ex, now - started);
    }
  };
}

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
