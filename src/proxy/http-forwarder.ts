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
import { OVERLOADED_HEADER, TIMEOUT_HEADER } from '../protocol/fields.ts';
import { GRPC_SERVER_FAILURES, GRPC_TRAILER_FIELDS, grpcStatusOf } from '../protocol/grpc.ts';
import { requestHasBody } from '../protocol/request-body.ts';
import { downstreamResponseHeaders, http2ResponseHeaders, upstreamRequestHeaders, type HeaderObject } from './headers.ts';
import type { HttpUpstream } from './http-upstream.ts';

/** Sends the exchange upstream; resolves when the response is complete. */
export function forwardHttp(ex: Exchange): Promise<void> {
  const endpoint = ex.endpoint as Endpoint<HttpUpstream>;
  return new Promise<void>((resolve, reject) => {
    const handler = new ForwardHandler(ex, endpoint, resolve, reject);
    ex.onCancel(handler);
    const req = ex.req;
    const headers = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
      clientAddress: req.socket.remoteAddress,
      // An HTTP/2 caller names the service in :authority, which has no HTTP/1.1 Host to copy.
      authority: ex.authority ?? (req.httpVersionMajor === 2 && req.headers.host === undefined ? (req.headers[':authority'] as string | undefined) : undefined),
    });
    if (ex.extraHeaders !== undefined) headers.push(...ex.extraHeaders);
    // Tell the next hop how long this caller will still wait (deadline propagation).
    if (Number.isFinite(ex.deadline)) headers.push(TIMEOUT_HEADER, String(Math.max(1, Math.floor(ex.deadline - performance.now()))));
    try {
      endpoint.upstream.pool.dispatch(
        {
          path: ex.path,
          method: req.method ?? 'GET',
          headers,
          body: ex.body ?? (requestHasBody(req) ? req : null),
          upgrade: null,
        },
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
    const res = this.ex.res;
    if (res.destroyed) {
      controller.abort(new Error('client closed the connection'));
      return;
    }
    this.ex.upstreamStatus = statusCode;
    this.ex.upstreamOverloaded = headers[OVERLOADED_HEADER] !== undefined;
    // gRPC "trailers-only" responses carry their status in the headers.
    const grpc = grpcStatusOf(headers);
    this.ex.outcome = statusCode >= 500 ? 'http_5xx' : grpc !== undefined && GRPC_SERVER_FAILURES.has(grpc) ? 'grpc_error' : 'success';
    if (this.ex.retryOnStatus?.(statusCode, grpc) === true) {
      this.discarding = grpc !== undefined && grpc !== 0 && statusCode < 500 ? `grpc-${grpc}` : String(statusCode);
      return;
    }
    this.ex.status = statusCode;
    const out = downstreamResponseHeaders(headers);
    if (grpc !== undefined) {
      // A "trailers-only" gRPC answer is relayed as headers + trailers: the same status for every
      // gRPC client, without depending on END_STREAM landing on the HEADERS frame.
      const trailers: Record<string, string> = {};
      for (const name of GRPC_TRAILER_FIELDS) {
        const value = out[name];
        if (typeof value === 'string') trailers[name] = value;
        delete out[name];
      }
      res.addTrailers(trailers);
    }
    if (this.ex.req.httpVersionMajor === 2) {
      // HTTP/2 has no reason phrase, and refuses fields HTTP/1.1 tolerates (repeated single-value ones).
      try {
        res.writeHead(statusCode, http2ResponseHeaders(out));
      } catch {
        res.writeHead(statusCode, http2ResponseHeaders(out, true));
      }
    } else if (statusMessage === undefined || statusMessage === '') res.writeHead(statusCode, out);
    else res.writeHead(statusCode, statusMessage, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.discarding !== undefined) return;
    if (!this.ex.res.write(chunk)) {
      controller.pause();
      this.ex.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: HeaderObject): void {
    if (this.discarding !== undefined) {
      this.settle();
      this.reject(new RetryableStatus(this.discarding));
      return;
    }
    const res = this.ex.res;
    if (trailers !== null && typeof trailers === 'object') {
      const grpc = grpcStatusOf(trailers);
      if (grpc !== undefined && GRPC_SERVER_FAILURES.has(grpc)) this.ex.outcome = 'grpc_error';
      for (const _ in trailers) {
        res.addTrailers(trailers as Record<string, string>);
        break;
      }
    }
    res.end();
    this.settle();
    this.resolve();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.settled) return;
    this.settle();
    const ex = this.ex;
    const cancelled = this.cancelReason ?? ex.cancelled;
    let failure: MeshError;
    if (cancelled instanceof MeshError) {
      ex.outcome = 'timeout';
      failure = cancelled;
    } else if (cancelled instanceof ClientGone || clientGone(ex)) {
      ex.outcome = 'client_abort';
      failure = new MeshError('bad_request', 'client closed the connection');
    } else {
      failure = classify(err, this.endpoint.address);
      ex.outcome = OUTCOME_OF[failure.code] ?? 'reset';
    }
    if (!ex.res.headersSent) {
      this.reject(failure);
    } else {
      // The caller already has a status line: the only honest signal left is a reset.
      ex.res.destroy();
      this.resolve();
    }
  }

  private settle(): void {
    this.settled = true;
    this.ex.onCancel(undefined);
  }
}

function clientGone(ex: Exchange): boolean {
  const socket = ex.req.socket as { destroyed?: boolean } | null;
  return socket === null || socket.destroyed === true || ex.res.destroyed;
}

const OUTCOME_OF: Partial<Record<MeshError['code'], Exchange['outcome']>> = {
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
  if (CONNECT_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code.startsWith('CERT_') || code.startsWith('UNABLE_TO_') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'SELF_SIGNED_CERT_IN_CHAIN') return new MeshError('connect_failed', `cannot connect to ${endpoint}`, { cause: err });
  if (TIMEOUT_CODES.has(code)) return new MeshError('upstream_timeout', `${endpoint} did not answer in time`, { cause: err });
  if (err.name === 'HTTPParserError' || code.startsWith('HPE_') || code === 'UND_ERR_INFO' || code === 'UND_ERR_HEADERS_OVERFLOW' || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    return new MeshError('upstream_protocol_error', `${endpoint} sent an invalid HTTP response`, { cause: err });
  }
  return new MeshError('upstream_reset', `${endpoint} closed the connection before a complete response`, { cause: err });
}
