/**
 * One request/response pair travelling through a service's stack. Layers
 * read and annotate it; whoever holds the upstream call registers a canceller
 * so that a deadline or a vanished client stops upstream work at once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Endpoint } from '../balancer/endpoint.ts';
import type { MeshError } from '../errors.ts';
import type { Outcome } from '../protocol/outcome.ts';
import type { BudgetList } from './deadline-timers.ts';

/** Whatever holds upstream work for the exchange and can stop it. */
export interface Cancellable {
  cancel(reason: MeshError | ClientGone): void;
}

/** Reason given to cancellers when the caller closed its connection. */
export class ClientGone {
  readonly kind = 'client_gone';
}
export const CLIENT_GONE = new ClientGone();

export class Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Origin-form request target sent upstream ("/path?query"). */
  readonly path: string;
  /** Host to send upstream instead of the caller's (absolute-form requests); undefined keeps it. */
  readonly authority: string | undefined;
  readonly startedAt: number;
  /** Absolute monotonic time after which the exchange fails with upstream_timeout. */
  deadline = Number.POSITIVE_INFINITY;
  endpoint: Endpoint | undefined = undefined;
  /** How the upstream attempt ended; recorded against the endpoint. */
  outcome: Outcome = 'success';
  /** Status sent to the caller (0 until headers are written). */
  status = 0;
  /** Status of the current attempt's upstream response (0 when none arrived). */
  upstreamStatus = 0;
  /** The endpoint's meshd said it is overloaded (x-meshd-overloaded on its response). */
  upstreamOverloaded = false;
  /** Set once the exchange was cancelled; later cancels are ignored. */
  cancelled: MeshError | ClientGone | undefined = undefined;
  /** Attempt number, from 1; the retry layer increments it. */
  attempt = 1;
  /** The endpoint the previous attempt failed on; the balancer avoids it when it can. */
  avoid: Endpoint | undefined = undefined;
  /** This attempt's request body (the retry layer's replayable stream); undefined streams `req` itself. */
  body: Buffer | Readable | undefined = undefined;
  /**
   * Asked by the forwarder when an attempt's response has arrived: true means "do not relay
   * this status, the retry layer has committed to another attempt". Unset when no retry is possible.
   */
  retryOnStatus: ((status: number, grpcStatus: number | undefined) => boolean) | undefined = undefined;
  /** Headers meshd adds upstream as [name, value, …] (the verified peer identity on inbound). */
  extraHeaders: string[] | undefined = undefined;
  private canceller: Cancellable | undefined = undefined;
  /** Links of the deadline list this exchange waits in (deadline-timers.ts); undefined when in none. */
  deadlineList: BudgetList | undefined = undefined;
  deadlinePrev: Exchange | undefined = undefined;
  deadlineNext: Exchange | undefined = undefined;

  constructor(req: IncomingMessage, res: ServerResponse, path: string, authority: string | undefined, startedAt: number) {
    this.req = req;
    this.res = res;
    this.path = path;
    this.authority = authority;
    this.startedAt = startedAt;
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
