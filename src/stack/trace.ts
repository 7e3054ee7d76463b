/**
 * Tracing and access logs as layers, outermost in a service's stack so that
 * they see the whole exchange: a span for this hop (a child of the caller's
 * W3C traceparent, the parent of the upstream request), and one structured
 * line per exchange. Both read the exchange when it ends; the data path
 * never waits on either.
 */
import type { Clock, Random } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { Exchange, FieldReader, HopSpan } from './exchange.ts';
import type { Layer } from './layer.ts';
import { judgedStatus } from '../protocol/grpc.ts';

/** How one hop ended, as its span records it. */
export interface HopOutcome {
  /** The status the caller got; undefined for a TCP connection that went through (TCP has none). */
  readonly status: number | undefined;
  /** The `grpc-status` the caller got; undefined when the answer carried none. */
  readonly grpcStatus?: number | undefined;
  readonly endpoint: string | undefined;
  readonly route: string | undefined;
  readonly retries: number;
  readonly errorCode: string | undefined;
  readonly fault: string | undefined;
  /** A tunnel's bytes, each way as the caller's socket saw them (WebSocket, TCP). */
  readonly bytesSent?: number;
  readonly bytesReceived?: number;
}

export interface TracedHop extends HopSpan {
  end(outcome: HopOutcome): void;
}

/** What a hop carries: HTTP exchanges (HTTP/1.1, HTTP/2; gRPC told apart on the map), WebSocket tunnels, TCP connections. */
export type HopProtocol = 'http' | 'grpc' | 'websocket' | 'tcp';

/** A hop as it starts. */
export interface HopStart {
  readonly kind: 'outbound' | 'inbound';
  readonly protocol: HopProtocol;
  readonly service: string;
  /** Where the caller's traceparent and tracestate are read (request fields, a pod stream's preamble); undefined starts a trace. */
  readonly fields: FieldReader | undefined;
  readonly method: string | undefined;
  /** The request target (its query is not recorded). */
  readonly path: string | undefined;
  readonly caller: string | undefined;
}

/** Starts hop spans (tracing/otel-tracer.ts). */
export interface HopTracer {
  start(hop: HopStart): TracedHop;
}

/** The status an exchange ended with, as the caller saw it (499: the caller left first). */
export function finalStatus(ex: Exchange): number {
  return ex.attempt.outcome === 'client_abort' && !ex.response.started ? 499 : ex.response.status;
}

/**
 * The status an exchange is counted and judged by: its final status, or for a gRPC answer (HTTP
 * 200 whatever happened) the HTTP status its `grpc-status` stands for: an UNAVAILABLE call is a
 * failure on every dashboard, alert and log, not a 2xx.
 */
export function classifiedStatus(ex: Exchange): number {
  return judgedStatus(finalStatus(ex), ex.response.grpcStatus);
}

/** `tracer` is read per exchange (tracing follows reloads); undefined passes the exchange through. */
export function traceLayer(tracer: () => HopTracer | undefined, kind: 'outbound' | 'inbound', service: string): Layer {
  return (next) => async (ex) => {
    const head = ex.head;
    const span = tracer()?.start({ kind, protocol: 'http', service, fields: head, method: head.method, path: head.path, caller: ex.caller });
    if (span === undefined) return next(ex);
    ex.span = span;
    try {
      await next(ex);
    } finally {
      span.end({
        status: finalStatus(ex),
        grpcStatus: ex.response.grpcStatus,
        endpoint: ex.attempt.endpoint?.address,
        route: ex.route,
        retries: ex.retries,
        errorCode: ex.errorCode,
        fault: ex.attempt.fault,
      });
    }
  };
}

export interface AccessLogSettings {
  /** Share of exchanges logged (0–1); errors are always logged. */
  readonly sampleRatio: number;
}

/**
 * One line per exchange (sampled; every error): time, caller identity, service, route, endpoint,
 * method, path, status, response bytes, duration, retries, error code, fault and trace id.
 */
export function accessLogLayer(log: Logger, service: string, access: () => AccessLogSettings | undefined, clock: Clock, random: Random): Layer {
  return (next) => async (ex) => {
    const settings = access();
    if (settings === undefined) return next(ex);
    // The request as the caller sent it: a route's URLRewrite replaces ex.head on the way.
    const head = ex.head;
    try {
      await next(ex);
    } finally {
      const status = finalStatus(ex);
      const grpcStatus = ex.response.grpcStatus;
      const error = classifiedStatus(ex) >= 500 || ex.errorCode !== undefined;
      if (error || settings.sampleRatio >= 1 || random() < settings.sampleRatio) {
        log.info(
          {
            access: true,
            caller: ex.caller ?? head.remoteAddress,
            service,
            route: ex.route,
            endpoint: ex.attempt.endpoint?.address,
            method: head.method,
            path: head.path.split('?')[0],
            status,
            grpcStatus,
            bytes: ex.response.bytesSent,
            durationMs: Math.round((clock() - ex.startedAt) * 1000) / 1000,
            retries: ex.retries,
            error: ex.errorCode,
            fault: ex.attempt.fault,
            traceId: ex.span?.traceId,
          },
          'access',
        );
      }
    }
  };
}

/** What a service's stack reports every exchange to, beyond metrics: traces and access logs (read per exchange). */
export interface ExchangeWitnesses {
  tracer(): HopTracer | undefined;
  accessLog(): AccessLogSettings | undefined;
  readonly log: Logger;
  readonly random: Random;
}

/** A request meshd answered itself before any service stack took it. */
export interface RefusedRequest {
  readonly listener: 'outbound' | 'inbound';
  /** The service named, when one was (the Host of an unknown one included). */
  readonly service: string | undefined;
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly caller: string | undefined;
  readonly status: number;
  readonly error: string;
  readonly durationMs: number;
}

/**
 * The access line of a request no service took (unknown service, malformed, refused at the door):
 * written whenever access logs are on, as every error is, so that a 404 or 403 a caller got is
 * never missing from the log.
 */
export function logRefusedRequest(witnesses: ExchangeWitnesses, refused: RefusedRequest): void {
  if (witnesses.accessLog() === undefined) return;
  witnesses.log.info(
    {
      access: true,
      listener: refused.listener,
      caller: refused.caller,
      service: refused.service,
      method: refused.method,
      path: refused.path?.split('?')[0],
      status: refused.status,
      durationMs: Math.round(refused.durationMs * 1000) / 1000,
      error: refused.error,
    },
    'access',
  );
}
