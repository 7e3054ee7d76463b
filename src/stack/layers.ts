/**
 * The layers of a service's outbound stack, outermost first:
 * observe → respond → deadline → balance → (proxy). Each does one job.
 */
import type { Balancer } from '../balancer/balancer.ts';
import type { Clock } from '../clock.ts';
import { formatDuration } from '../config/units.ts';
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
      else if (ex.res.headersSent && !ex.res.writableFinished) recorder.reset('upstream');
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

/** Bounds the whole exchange, from arrival to the last response byte. */
export function deadlineLayer(timeoutMs: number): Layer {
  return (next) => async (ex) => {
    ex.deadline = ex.startedAt + timeoutMs;
    const timer = setTimeout(onDeadline, timeoutMs, ex, timeoutMs);
    try {
      await next(ex);
    } finally {
      clearTimeout(timer);
    }
  };
}

function onDeadline(ex: Exchange, timeoutMs: number): void {
  ex.cancel(new MeshError('upstream_timeout', `no complete response within the ${formatDuration(timeoutMs)} timeout`));
}

/** Picks an endpoint, and accounts its in-flight load and the attempt's outcome and latency. */
export function balanceLayer(
  service: string,
  balancer: () => Balancer,
  hashKey: ((headers: Exchange['req']['headers']) => string | undefined) | undefined,
  clock: Clock,
): Layer {
  return (next) => async (ex) => {
    const endpoint = balancer().pick(clock(), hashKey?.(ex.req.headers));
    if (endpoint === undefined) {
      throw new MeshError('no_endpoints', `service "${service}" has no available endpoints`, { retryAfterSeconds: 1 });
    }
    ex.endpoint = endpoint;
    endpoint.inFlight++;
    const started = clock();
    try {
      await next(ex);
    } finally {
      endpoint.inFlight--;
      const now = clock();
      endpoint.record(ex.outcome, now - started, now);
    }
  };
}
