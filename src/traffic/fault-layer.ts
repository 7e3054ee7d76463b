/**
 * Applies fault injections to an attempt once its endpoint is chosen (it
 * sits between the balance layer and the forwarder). A delay waits before
 * the request goes upstream, and is cut short by the deadline or a caller
 * that leaves; an abort answers as the endpoint would have (a status, or a
 * reset), so retries, the endpoint's statistics and the feedback loop all
 * react as they would to the real thing.
 */
import { MeshError } from '../errors.ts';
import { FAULT_HEADER } from '../protocol/fields.ts';
import { RetryableStatus } from '../protocol/retryable-status.ts';
import { ClientGone, type Exchange } from '../stack/exchange.ts';
import type { Layer } from '../stack/layer.ts';
import { countInjection, type FaultPlan, type FaultRecorder, type FaultRegistry } from './faults.ts';

export function faultLayer(service: string, faults: FaultRegistry, recorder: FaultRecorder): Layer {
  return (next) => async (ex) => {
    const endpoint = ex.attempt.endpoint;
    if (!faults.has(service) || endpoint === undefined) return next(ex);
    const plan = faults.plan(service, endpoint, ex.route, ex.head, ex.caller);
    if (plan === undefined) return next(ex);
    const name = plan.fault.spec.name;
    ex.attempt.fault = name;
    if (plan.delayMs > 0) {
      countInjection(plan, 'delay', recorder);
      ex.response.setField(FAULT_HEADER, name);
      await delay(ex, plan.delayMs);
    }
    if (plan.abort === undefined) return next(ex);
    if (plan.abort.reset) {
      countInjection(plan, 'reset', recorder);
      ex.attempt.outcome = 'reset';
      throw new MeshError('upstream_reset', `fault "${name}" reset the stream to ${endpoint.address}`);
    }
    countInjection(plan, 'abort', recorder);
    abortWith(ex, plan, plan.abort.status ?? 503);
  };
}

/** Answers `status` as the endpoint would have, unless the retry layer takes it for another attempt. */
function abortWith(ex: Exchange, plan: FaultPlan, status: number): void {
  const { attempt, response } = ex;
  attempt.upstreamStatus = status;
  attempt.outcome = status >= 500 ? 'http_5xx' : 'success';
  if (attempt.retryable?.(status, undefined) === true) throw new RetryableStatus(String(status));
  const name = plan.fault.spec.name;
  if (ex.head.field('content-type')?.startsWith('application/grpc') === true) {
    response.start(200, { 'content-type': 'application/grpc', [FAULT_HEADER]: name });
    response.trailers({ 'grpc-status': String(grpcStatusFor(status)), 'grpc-message': encodeURIComponent(`fault "${name}" injected HTTP ${status}`) });
    response.end();
    return;
  }
  const body = `${JSON.stringify({ error: 'fault_injected', fault: name, status })}\n`;
  response.start(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), [FAULT_HEADER]: name });
  response.end(ex.head.method === 'HEAD' ? undefined : body);
}

/** The gRPC code for an HTTP status (gRPC's "HTTP to gRPC status code mapping"). */
function grpcStatusFor(status: number): number {
  if (status === 400) return 13;
  if (status === 401) return 16;
  if (status === 403) return 7;
  if (status === 404) return 12;
  if (status === 429 || status === 502 || status === 503 || status === 504) return 14;
  return 2;
}

/** Waits `ms`, or until the exchange is cancelled (then throws as the forwarder would). */
function delay(ex: Exchange, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      ex.onCancel(undefined);
      resolve();
    }, ms);
    ex.onCancel({
      cancel: (reason) => {
        clearTimeout(timer);
        ex.onCancel(undefined);
        if (reason instanceof ClientGone) {
          ex.attempt.outcome = 'client_abort';
          reject(new MeshError('client_closed', 'client closed the connection'));
        } else {
          ex.attempt.outcome = 'timeout';
          reject(reason);
        }
      },
    });
    if (ex.cancelled !== undefined) {
      clearTimeout(timer);
      ex.attempt.outcome = ex.cancelled instanceof ClientGone ? 'client_abort' : 'timeout';
      reject(ex.cancelled instanceof MeshError ? ex.cancelled : new MeshError('client_closed', 'client closed the connection'));
    }
  });
}
