/**
 * What an HTTP exchange's outer layers do (stack/trace.ts, observeLayer's
 * edge), for a WebSocket tunnel or a TCP connection, which never pass
 * through a layer stack: a span from the upgrade or accept to the close, one
 * dependency-map edge when the handshake or connect settles (its latency is
 * the handshake's, not the tunnel's lifetime), and one access line at the
 * close with the bytes each way.
 */
import type { HeaderObject } from '../proxy/headers.ts';
import type { Clock } from '../clock.ts';
import { ERROR_STATUS, type ErrorCode } from '../errors.ts';
import type { FieldReader } from './exchange.ts';
import type { EdgeRecorder } from './observer.ts';
import type { ExchangeWitnesses, HopStart, TracedHop } from './trace.ts';

/** How the handshake or connect ended. */
export interface TunnelSettlement {
  readonly endpoint: string | undefined;
  /** The status the caller got (101 for an upgrade that went through); undefined for TCP. */
  readonly status?: number | undefined;
  /** meshd's refusal or failure, when there was one. */
  readonly errorCode?: ErrorCode | undefined;
  readonly fault?: string | undefined;
}

/** The caller's socket, read at the close for the bytes each way. */
export interface TunnelSocket {
  readonly bytesWritten: number;
  readonly bytesRead: number;
}

export interface TunnelWitnessDeps {
  readonly witnesses: ExchangeWitnesses | undefined;
  readonly edges: EdgeRecorder | undefined;
  readonly clock: Clock;
}

export interface TunnelStart {
  readonly kind: HopStart['kind'];
  readonly protocol: 'websocket' | 'tcp';
  readonly service: string;
  /** Verified identity, else the caller's address. */
  readonly caller: string;
  /** Whether `caller` is a verified identity (recorded on the span as such). */
  readonly verified: boolean;
  /** The handshake's fields or a pod stream's preamble: where the caller's trace context is read. */
  readonly fields?: FieldReader | undefined;
  readonly method?: string | undefined;
  readonly path?: string | undefined;
}

export class TunnelWitness {
  private readonly deps: TunnelWitnessDeps;
  private readonly start: TunnelStart;
  private readonly startedAt: number;
  private readonly span: TracedHop | undefined;
  private settled: TunnelSettlement | undefined;
  private ended = false;

  constructor(deps: TunnelWitnessDeps, start: TunnelStart) {
    this.deps = deps;
    this.start = start;
    this.startedAt = deps.clock();
    this.span = deps.witnesses?.tracer()?.start({
      kind: start.kind,
      protocol: start.protocol,
      service: start.service,
      fields: start.fields,
      method: start.method,
      path: start.path,
      caller: start.verified ? start.caller : undefined,
    });
  }

  /** The traceparent to send on: in the handshake's fields, or a pod stream's preamble. */
  get traceparent(): string | undefined {
    return this.span?.traceparent;
  }

  /** Sets the trace context fields a handshake goes upstream with (this hop's span the parent). */
  traceFields(headers: HeaderObject): void {
    if (this.span === undefined) return;
    headers['traceparent'] = this.span.traceparent;
    if (this.span.tracestate === undefined) delete headers['tracestate'];
    else headers['tracestate'] = this.span.tracestate;
  }

  event(name: string, attributes?: Readonly<Record<string, string | number>>): void {
    this.span?.event(name, attributes);
  }

  /** The handshake or connect ended: one edge on the dependency map (the first call counts). */
  settle(settlement: TunnelSettlement): void {
    if (this.settled !== undefined) return;
    this.settled = settlement;
    const seconds = (this.deps.clock() - this.startedAt) / 1000;
    this.deps.edges?.exchange(this.start.caller, this.start.service, settlement.endpoint, this.failed(settlement), seconds, this.start.protocol);
  }

  /** The tunnel closed, or never opened: its span ends and its access line is written. */
  end(client: TunnelSocket): void {
    if (this.ended) return;
    this.ended = true;
    // Closed before the handshake or connect settled: the caller left first (nginx's 499 for HTTP).
    const settled = this.settled ?? { endpoint: undefined, status: this.start.protocol === 'websocket' ? 499 : undefined };
    const status = settled.status ?? (settled.errorCode === undefined ? undefined : ERROR_STATUS[settled.errorCode]);
    const outcome = {
      status,
      endpoint: settled.endpoint,
      route: undefined,
      retries: 0,
      errorCode: settled.errorCode,
      fault: settled.fault,
      bytesSent: client.bytesWritten,
      bytesReceived: client.bytesRead,
    };
    this.span?.end(outcome);
    const w = this.deps.witnesses;
    const access = w?.accessLog();
    if (w === undefined || access === undefined) return;
    // As for HTTP: every error and refusal, a sample of the rest.
    if (!this.failed(settled) && settled.errorCode === undefined && access.sampleRatio < 1 && w.random() >= access.sampleRatio) return;
    w.log.info(
      {
        access: true,
        protocol: this.start.protocol,
        caller: this.start.caller,
        service: this.start.service,
        endpoint: settled.endpoint,
        method: this.start.method,
        path: this.start.path?.split('?')[0],
        status,
        bytes: client.bytesWritten,
        bytesReceived: client.bytesRead,
        durationMs: Math.round((this.deps.clock() - this.startedAt) * 1000) / 1000,
        error: settled.errorCode,
        fault: settled.fault,
        traceId: this.span?.traceId,
      },
      'access',
    );
  }

  /** An error on the map and in the logs, as for HTTP: a 5xx answer, or meshd's failure whose code maps to one. */
  private failed(s: TunnelSettlement): boolean {
    const status = s.status ?? (s.errorCode === undefined ? 0 : ERROR_STATUS[s.errorCode]);
    return status >= 500;
  }
}
