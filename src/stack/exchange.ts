/**
 * One request/response pair travelling through a service's stack, in terms
 * of HTTP rather than of any one codec: a request head, the caller's body
 * stream and a response sink. A listener adapts its codec to these
 * (listeners/node-exchange.ts adapts node:http and node:http2), so a second
 * HTTP/1.1 codec can carry the same stack. Layers read and annotate the
 * exchange; whoever holds upstream work registers a canceller so that a
 * deadline or a vanished client stops it at once.
 */
import type { Readable } from 'node:stream';
import type { Endpoint } from '../balancer/endpoint.ts';
import type { MeshError } from '../errors.ts';
import type { Outcome } from '../protocol/outcome.ts';
import type { BudgetList } from './deadline-timers.ts';

/** A hop's span as the layers see it (tracing/otel-tracer.ts makes them). */
export interface HopSpan {
  /** The W3C traceparent this hop sends upstream (its own span as the parent). */
  readonly traceparent: string;
  /**
   * The W3C tracestate sent upstream with it: the caller's as parsed (at most 32 members), or
   * undefined when the trace starts here (a tracestate without a valid traceparent is dropped).
   */
  readonly tracestate: string | undefined;
  readonly traceId: string;
  /** Something that affected the exchange: a retry, shedding, ejected endpoints passed over. */
  event(name: string, attributes?: Readonly<Record<string, string | number>>): void;
}

/** Reads request fields by lowercase name (repeated fields joined as HTTP allows); undefined when absent. */
export interface FieldReader {
  field(name: string): string | undefined;
}

/** What a layer may know of the request before its body. */
export interface RequestHead extends FieldReader {
  readonly method: string;
  /** Origin-form request target sent upstream ("/path?query"). */
  readonly path: string;
  /** Host to send upstream instead of the caller's Host field (absolute-form, HTTP/2 :authority); undefined keeps it. */
  readonly authority: string | undefined;
  /** The caller's fields as a flat [name, value, …] list: order, case and repeats kept. */
  readonly fields: readonly string[];
  /** Whether a body follows the head. */
  readonly hasBody: boolean;
  /** The caller's address (for X-Forwarded-For and Forwarded). */
  readonly remoteAddress: string | undefined;
}

/** Where the response goes, whatever the codec. */
export interface ResponseSink {
  /** The status line went out: no other answer is possible any more. */
  readonly started: boolean;
  /** The response is complete. */
  readonly ended: boolean;
  /** The caller is gone. */
  readonly closed: boolean;
  /** The status sent (or to be sent). */
  readonly status: number;
  /** Adds a field to the response before it starts (meshd's own signals). */
  setField(name: string, value: string): void;
  start(status: number, fields: Readonly<Record<string, string | string[] | undefined>>, reason?: string): void;
  /** false: wait for `onceDrain` before writing more. */
  write(chunk: Buffer): boolean;
  onceDrain(resume: () => void): void;
  trailers(fields: Readonly<Record<string, string>>): void;
  end(body?: string): void;
  /** Cuts the response: the caller sees a reset, never a truncated body taken for complete. */
  reset(): void;
  /** Body bytes written so far (access logs); undefined where not counted. */
  readonly bytesSent?: number | undefined;
  /** The `grpc-status` the caller was sent (in trailers, or a trailers-only answer); undefined: none. */
  readonly grpcStatus: number | undefined;
}

/** Whatever holds upstream work for the exchange and can stop it. */
export interface Cancellable {
  cancel(reason: MeshError | ClientGone): void;
}

/** Reason given to cancellers when the caller closed its connection. */
export class ClientGone {
  readonly kind = 'client_gone';
}
export const CLIENT_GONE = new ClientGone();

/**
 * Decides, when an attempt's response arrives, whether to relay it or try again: true means "do
 * not relay this status, another attempt is committed". The retry layer sets one per attempt.
 */
export type ResponseClassifier = (status: number, grpcStatus: number | undefined) => boolean;

/** Everything that belongs to one attempt; `Exchange.nextAttempt` resets it in one place. */
export class AttemptState {
  endpoint: Endpoint | undefined = undefined;
  /** How the attempt ended; recorded against the endpoint. */
  outcome: Outcome = 'success';
  /** Status of the upstream response (0 when none arrived). */
  upstreamStatus = 0;
  /** The endpoint's meshd said it is overloaded (x-meshd-overloaded on its response). */
  upstreamOverloaded = false;
  /** The request body this attempt sends (a replayable copy); undefined sends the caller's stream. */
  body: Readable | undefined = undefined;
  /** Unset when no retry is possible. */
  retryable: ResponseClassifier | undefined = undefined;
  /** The fault injection that acted on this attempt (labelled in logs, metrics and the response). */
  fault: string | undefined = undefined;

  reset(body: Readable | undefined, retryable: ResponseClassifier | undefined): void {
    this.endpoint = undefined;
    this.outcome = 'success';
    this.upstreamStatus = 0;
    this.upstreamOverloaded = false;
    this.body = body;
    this.retryable = retryable;
    this.fault = undefined;
  }
}

export class Exchange {
  /** The request as it goes upstream (a route's header modifier may replace it). */
  head: RequestHead;
  /** The caller's body as it arrives (undefined when the head says there is none; a mirror may tee it). */
  body: Readable | undefined;
  /** Where the response goes (a route's header modifier may wrap it). */
  response: ResponseSink;
  readonly startedAt: number;
  /** Absolute monotonic time after which the exchange fails with upstream_timeout. */
  deadline = Number.POSITIVE_INFINITY;
  /** Set once the exchange was cancelled; later cancels are ignored. */
  cancelled: MeshError | ClientGone | undefined = undefined;
  /** The current attempt. */
  readonly attempt = new AttemptState();
  /** The endpoint the previous attempt failed on; the balancer avoids it when it can. */
  avoid: Endpoint | undefined = undefined;
  /** Fields meshd adds upstream as [name, value, …] (the verified peer identity on inbound). */
  extraFields: readonly string[] | undefined = undefined;
  /**
   * The caller's verified identity: the peer's certificate on inbound, the calling pod's workload
   * identity in Kubernetes mesh mode; undefined when meshd knows none (never read from a request field).
   */
  caller: string | undefined = undefined;
  /** The route the exchange took (metrics, logs, faults); undefined: the service's defaults. */
  route: string | undefined = undefined;
  /** The prefix the route's PathPrefix match matched ("/" without one): URLRewrite and RequestRedirect replace it. */
  routePrefix = '/';
  /** The span of this hop when tracing is on (stack/trace.ts). */
  span: HopSpan | undefined = undefined;
  /** Retries sent for this exchange. */
  retries = 0;
  /** The code of meshd's own error answer, when it gave one. */
  errorCode: string | undefined = undefined;
  private canceller: Cancellable | undefined = undefined;
  /** Links of the deadline list this exchange waits in (deadline-timers.ts); undefined when in none. */
  deadlineList: BudgetList | undefined = undefined;
  deadlinePrev: Exchange | undefined = undefined;
  deadlineNext: Exchange | undefined = undefined;

  constructor(head: RequestHead, body: Readable | undefined, response: ResponseSink, startedAt: number) {
    this.head = head;
    this.body = body;
    this.response = response;
    this.startedAt = startedAt;
  }

  /** Starts a new attempt: every per-attempt field reset, with this attempt's body and classifier. */
  nextAttempt(body: Readable | undefined, retryable: ResponseClassifier | undefined): void {
    this.attempt.reset(body, retryable);
  }

  onCancel(canceller: Cancellable | undefined): void {
    this.canceller = canceller;
  }

  /** Ends the exchange: deadline passed or caller gone. */
  cancel(reason: MeshError | ClientGone): void {
    if (this.cancelled !== undefined) return;
    this.cancelled = reason;
    this.canceller?.cancel(reason);
  }

  /** Ends only the current attempt (per-try timeout); the retry layer may start another. */
  cancelAttempt(reason: MeshError): void {
    this.canceller?.cancel(reason);
  }
}
