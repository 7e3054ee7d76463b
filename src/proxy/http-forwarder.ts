/**
 * The terminal handler of the outbound stack: sends the exchange to the
 * chosen endpoint's pool and streams the response back with backpressure in
 * both directions. Nothing is buffered whole.
 */
import type { Dispatcher } from 'undici';
import type { Endpoint } from '../balancer/endpoint.ts';
import { MeshError } from '../errors.ts';
import { ClientGone, type Cancellable, type Exchange } from '../stack/exchange.ts';
import { RetryableStatus } from '../protocol/retryable-status.ts';
import { MESH_SERVICE_HEADER, MESH_TARGET_HEADER, OVERLOADED_HEADER, TIMEOUT_HEADER } from '../protocol/fields.ts';
import { GRPC_SERVER_FAILURES, GRPC_TRAILER_FIELDS, formatGrpcTimeout, grpcStatusOf } from '../protocol/grpc.ts';
import { downstreamResponseHeaders, hasFields, upstreamRequestHeaders, withoutFields, type HeaderObject } from './headers.ts';
import type { Outcome } from '../protocol/outcome.ts';
import type { HttpUpstream } from './http-upstream.ts';

/** Sends the exchange upstream; resolves when the response is complete. */
export function forwardHttp(ex: Exchange): Promise<void> {
  const endpoint = ex.attempt.endpoint as Endpoint<HttpUpstream>;
  return new Promise<void>((resolve, reject) => {
    const handler = new ForwardHandler(ex, endpoint, resolve, reject);
    ex.onCancel(handler);
    const head = ex.head;
    const fields = upstreamRequestHeaders(head.fields, head.field('connection'), { clientAddress: head.remoteAddress, authority: head.authority });
    if (ex.extraFields !== undefined) fields.push(...ex.extraFields);
    // Tracing: this hop's span is the parent upstream (the caller's traceparent was its own parent).
    if (ex.span !== undefined) {
      replaceField(fields, 'traceparent', ex.span.traceparent);
      replaceField(fields, 'tracestate', ex.span.tracestate);
    }
    // A pod behind its node's meshd: that meshd delivers to the pod this attempt chose.
    const via = endpoint.spec.via;
    if (via !== undefined) fields.push(MESH_SERVICE_HEADER, via.service, MESH_TARGET_HEADER, endpoint.address);
    // Tell the next hop how long this caller will still wait (deadline propagation); a gRPC server
    // reads it in grpc-timeout, which is the tighter of the caller's and the service's.
    if (Number.isFinite(ex.deadline)) {
      const remainingMs = Math.max(1, Math.floor(ex.deadline - performance.now()));
      fields.push(TIMEOUT_HEADER, String(remainingMs));
      if (head.field('content-type')?.startsWith('application/grpc') === true) replaceField(fields, 'grpc-timeout', formatGrpcTimeout(remainingMs));
    }
    try {
      endpoint.upstream.pool.dispatch(
        { path: head.path, method: head.method, headers: fields, body: ex.attempt.body ?? ex.body ?? null, upgrade: null },
        handler,
      );
    } catch (err) {
      handler.onResponseError(undefined, err as Error);
    }
  });
}

class ForwardHandler implements Dispatcher.DispatchHandler, Cancellable {
  private readonly ex: Exchange;
  private readonly endpoint: Endpoint<HttpUpstream>;
  private readonly resolve: () => void;
  private readonly reject: (err: MeshError | RetryableStatus) => void;
  private controller: Dispatcher.DispatchController | undefined;
  private settled = false;
  /** Why this attempt was cancelled (deadline, caller gone, per-try timeout). */
  private cancelReason: MeshError | ClientGone | undefined;
  /** A retryable response ("503", "grpc-14") being drained so the connection can be reused; nothing is relayed. */
  private discarding: string | undefined;

  constructor(ex: Exchange, endpoint: Endpoint<HttpUpstream>, resolve: () => void, reject: (err: MeshError | RetryableStatus) => void) {
    this.ex = ex;
    this.endpoint = endpoint;
    this.resolve = resolve;
    this.reject = reject;
  }

  cancel(reason: MeshError | ClientGone): void {
    if (this.settled) return;
    this.cancelReason = reason;
    const err = reason instanceof MeshError ? reason : new Error('client closed the connection');
    if (this.controller !== undefined) this.controller.abort(err);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    const cancelled = this.ex.cancelled;
    if (cancelled !== undefined) controller.abort(cancelled instanceof MeshError ? cancelled : new Error('client closed the connection'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: HeaderObject, statusMessage?: string): void {
    if (statusCode < 200) return; // 1xx interim responses are not relayed
    const { attempt, response } = this.ex;
    if (response.closed) {
      controller.abort(new Error('client closed the connection'));
      return;
    }
    attempt.upstreamStatus = statusCode;
    attempt.upstreamOverloaded = headers[OVERLOADED_HEADER] !== undefined;
    // gRPC "trailers-only" responses carry their status in the headers.
    const grpc = grpcStatusOf(headers);
    attempt.outcome = statusCode >= 500 ? 'http_5xx' : grpc !== undefined && GRPC_SERVER_FAILURES.has(grpc) ? 'grpc_error' : 'success';
    if (attempt.retryable?.(statusCode, grpc) === true) {
      this.discarding = grpc !== undefined && grpc !== 0 && statusCode < 500 ? `grpc-${grpc}` : String(statusCode);
      return;
    }
    let out = downstreamResponseHeaders(headers);
    if (grpc !== undefined) {
      // A "trailers-only" gRPC answer is relayed as headers + trailers: the same status for every
      // gRPC client, without depending on END_STREAM landing on the HEADERS frame.
      const trailers: Record<string, string> = {};
      for (const name of GRPC_TRAILER_FIELDS) {
        const value = out[name];
        if (typeof value === 'string') trailers[name] = value;
      }
      out = withoutFields(out, GRPC_TRAILER_FIELDS);
      response.trailers(trailers);
    }
    response.start(statusCode, out, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.discarding !== undefined) return;
    if (!this.ex.response.write(chunk)) {
      controller.pause();
      this.ex.response.onceDrain(() => controller.resume());
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: HeaderObject): void {
    if (this.discarding !== undefined) {
      this.settle();
      this.reject(new RetryableStatus(this.discarding));
      return;
    }
    const response = this.ex.response;
    const grpc = grpcStatusOf(trailers);
    if (grpc !== undefined && GRPC_SERVER_FAILURES.has(grpc)) this.ex.attempt.outcome = 'grpc_error';
    if (hasFields(trailers)) response.trailers(trailers as Record<string, string>);
    response.end();
    this.settle();
    this.resolve();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.settled) return;
    this.settle();
    const { attempt, response } = this.ex;
    const cancelled = this.cancelReason ?? this.ex.cancelled;
    let failure: MeshError;
    if (cancelled instanceof MeshError) {
      attempt.outcome = 'timeout';
      failure = cancelled;
    } else if (cancelled instanceof ClientGone || response.closed) {
      attempt.outcome = 'client_abort';
      failure = new MeshError('client_closed', 'client closed the connection');
    } else {
      failure = classify(err, this.endpoint.address);
      attempt.outcome = OUTCOME_OF[failure.code] ?? 'reset';
    }
    if (!response.started) {
      this.reject(failure);
    } else {
      // The caller already has a status line: the only honest signal left is a reset. The access
      // line and the span still name what happened.
      if (attempt.outcome !== 'client_abort') this.ex.errorCode ??= failure.code;
      response.reset();
      this.resolve();
    }
  }

  private settle(): void {
    this.settled = true;
    this.ex.onCancel(undefined);
  }
}

const OUTCOME_OF: Partial<Record<MeshError['code'], Outcome>> = {
  connect_failed: 'connect_failed',
  upstream_timeout: 'timeout',
  upstream_reset: 'reset',
  upstream_protocol_error: 'protocol_error',
};

const CONNECT_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);
const TIMEOUT_CODES: ReadonlySet<string> = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Maps an undici or socket error to meshd's stable error code. */
export function classify(err: Error, endpoint: string): MeshError {
  const code = (err as { code?: string }).code ?? '';
  if (code === 'ERR_MESHD_IDENTITY_MISMATCH') return new MeshError('connect_failed', `${endpoint}: ${err.message}`, { cause: err });
  // A failed TLS handshake: nothing was sent, like a refused connection.
  if (
    CONNECT_CODES.has(code) ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    code.startsWith('CERT_') ||
    code.startsWith('UNABLE_TO_') ||
    code === 'DEPTH_ZERO_SELF_SIGNED_CERT' ||
    code === 'SELF_SIGNED_CERT_IN_CHAIN'
  )
    return new MeshError('connect_failed', `cannot connect to ${endpoint}`, { cause: err });
  if (TIMEOUT_CODES.has(code)) return new MeshError('upstream_timeout', `${endpoint} did not answer in time`, { cause: err });
  if (
    err.name === 'HTTPParserError' ||
    code.startsWith('HPE_') ||
    code === 'UND_ERR_INFO' ||
    code === 'UND_ERR_HEADERS_OVERFLOW' ||
    code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'
  ) {
    return new MeshError('upstream_protocol_error', `${endpoint} sent an invalid HTTP response`, { cause: err });
  }
  return new MeshError('upstream_reset', `${endpoint} closed the connection before a complete response`, { cause: err });
}

/** Sets `name` (lowercase) to `value` in a flat field list, dropping every earlier value (all of them for undefined). */
function replaceField(fields: string[], name: string, value: string | undefined): void {
  for (let i = fields.length - 2; i >= 0; i -= 2) if ((fields[i] as string).toLowerCase() === name) fields.splice(i, 2);
  if (value !== undefined) fields.push(name, value);
}
