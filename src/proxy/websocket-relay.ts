/**
 * A WebSocket upgrade through a service: held to the service's in-flight
 * limit, balanced, over mTLS when the endpoint is another meshd, with the
 * handshake's fields shaped as on every HTTP path and bounded by the service
 * timeout. The tunnel counts in flight on its endpoint and against the
 * service until the client socket closes.
 */
import type { HeaderModifier } from '../config/types.ts';
import { modifiedRequestFields } from '../routing/header-modifier.ts';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { HashKeyReader } from '../balancer/create.ts';
import type { Clock } from '../clock.ts';
import { MeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { AttemptPicker } from '../stack/attempt.ts';
import type { InFlightCount } from '../stack/layers.ts';
import type { ServiceRecorder } from '../stack/observer.ts';
import { sendRawError } from '../stack/respond.ts';
import { FAULT_HEADER, MESH_SERVICE_HEADER, MESH_TARGET_HEADER } from '../protocol/fields.ts';
import type { Endpoint } from '../balancer/endpoint.ts';
import type { EndpointVia } from '../config/types.ts';
import type { AttemptLease } from '../stack/attempt.ts';
import type { MeshTlsClient } from '../tls/client.ts';
import type { TunnelWitness } from '../stack/tunnel-witness.ts';
import { upgradeRequestHeaders, type UpgradeForwarder } from './upgrade-forwarder.ts';

export interface WebSocketRelayContext {
  readonly service: string;
  readonly attempts: AttemptPicker;
  readonly inFlight: InFlightCount;
  readonly maxInFlight: number;
  readonly hashKey: HashKeyReader | undefined;
  readonly recorder: ServiceRecorder;
  readonly upgrades: UpgradeForwarder;
  readonly tls: MeshTlsClient | undefined;
  readonly log: Logger;
  readonly clock: Clock;
  readonly connectTimeoutMs: number;
  readonly timeoutMs: number;
  /** The fault injection that acts on this tunnel's endpoint, dice rolled and counted; undefined for none. */
  readonly fault?: ((endpoint: Endpoint) => InjectedFault | undefined) | undefined;
  /** The tunnel's span, dependency-map edge and access line (its owner ends it when the client socket closes). */
  readonly witness: TunnelWitness;
  /** The Host the handshake goes upstream with (a route's URLRewrite); undefined keeps the caller's. */
  readonly authority?: string | undefined;
  /** The route's RequestHeaderModifier, applied to the handshake's fields as to an HTTP request's. */
  readonly requestHeaders?: HeaderModifier | undefined;
  /** Counts the handshake's answer against its route. */
  readonly routeFinished?: ((status: number) => void) | undefined;
}

/** A fault as a relay applies it: wait first, then answer `status`, cut the connection, or go on. */
export interface InjectedFault {
  readonly name: string;
  readonly delayMs: number;
  readonly abort: { readonly status: number | undefined; readonly reset: boolean } | undefined;
}

/** `extraFields`: what meshd adds to the handshake (the calling pod, in Kubernetes mesh mode). */
export function relayWebSocket(
  ctx: WebSocketRelayContext,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
  started: number,
  extraFields: readonly string[] | undefined,
): void {
  const { clock } = ctx;
  const refuse = (err: MeshError): void => {
    ctx.recorder.finishedWithoutEndpoint(err.status, (clock() - started) / 1000);
    ctx.routeFinished?.(err.status);
    ctx.witness.settle({ endpoint: undefined, errorCode: err.code });
    if (err.code === 'overloaded') ctx.witness.event('meshd.shed', { reason: err.message });
    sendRawError(socket, err);
  };
  if (ctx.inFlight.value >= ctx.maxInFlight) {
    refuse(new MeshError('overloaded', `service "${ctx.service}" is at its limit of ${ctx.maxInFlight} requests in flight`, { retryAfterSeconds: 1 }));
    return;
  }
  let lease: AttemptLease;
  try {
    lease = ctx.attempts.begin(ctx.hashKey?.({ field: (name) => firstValue(req.headers[name]) }), undefined);
  } catch (err) {
    refuse(err instanceof MeshError ? err : new MeshError('internal', 'internal error'));
    return;
  }
  const endpoint = lease.endpoint;
  // A pod behind its node's meshd: the tunnel goes there, naming the pod.
  const via = endpoint.spec.via;
  const identity = via?.identity ?? endpoint.spec.identity;
  if (identity !== undefined && ctx.tls === undefined) {
    lease.release();
    refuse(new MeshError('connect_failed', `endpoint ${endpoint.address} has an identity but this host has no TLS material`));
    return;
  }
  const inFlight = ctx.inFlight;
  inFlight.value++;
  socket.once('close', () => {
    lease.release();
    inFlight.value--;
  });
  const fault = ctx.fault?.(endpoint);
  if (fault !== undefined) {
    const act = (): void => {
      if (socket.destroyed) return;
      if (fault.abort === undefined) {
        forward();
        return;
      }
      if (fault.abort.reset) {
        lease.report('reset');
        ctx.witness.settle({ endpoint: endpoint.address, errorCode: 'upstream_reset', fault: fault.name });
        socket.destroy();
        return;
      }
      const status = fault.abort.status ?? 503;
      lease.report(status >= 500 ? 'http_5xx' : 'success', status);
      ctx.witness.settle({ endpoint: endpoint.address, status, fault: fault.name });
      const body = `${JSON.stringify({ error: 'fault_injected', fault: fault.name, status })}\n`;
      socket.end(
        `HTTP/1.1 ${status} Fault Injected\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${FAULT_HEADER}: ${fault.name}\r\nconnection: close\r\n\r\n${body}`,
      );
    };
    if (fault.delayMs > 0) setTimeout(act, fault.delayMs);
    else act();
    return;
  }
  forward();

  function forward(): void {
    forwardTunnel(ctx, req, socket, head, started, extraFields, lease, identity, via, fault?.name);
  }
}

function forwardTunnel(
  ctx: WebSocketRelayContext,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
  started: number,
  extraFields: readonly string[] | undefined,
  lease: AttemptLease,
  identity: string | undefined,
  via: EndpointVia | undefined,
  faultName: string | undefined,
): void {
  const { clock, log } = ctx;
  const endpoint = lease.endpoint;
  const target = {
    host: via?.host ?? endpoint.spec.host,
    port: via?.port ?? endpoint.spec.port,
    tls: identity === undefined ? undefined : ctx.tls?.connectionOptions(identity),
  };
  const limits = { connectTimeoutMs: ctx.connectTimeoutMs, handshakeTimeoutMs: ctx.timeoutMs };
  const fields = [...(extraFields ?? []), ...(via === undefined ? [] : [MESH_SERVICE_HEADER, via.service, MESH_TARGET_HEADER, endpoint.address])];
  const headers = modifiedRequestFields(upgradeRequestHeaders(req, fields), ctx.requestHeaders);
  if (ctx.authority !== undefined) headers['host'] = ctx.authority;
  // Tracing: this hop's span is the parent upstream, as on the HTTP path.
  ctx.witness.traceFields(headers);
  ctx.upgrades.forward(req, socket, head, target, headers, limits, started, clock, (result) => {
    lease.report(result.outcome, result.status ?? 0);
    const failure =
      result.error === undefined
        ? undefined
        : result.outcome === 'connect_failed'
          ? new MeshError('connect_failed', `cannot connect to ${endpoint.address}`, { cause: result.error })
          : result.outcome === 'timeout'
            ? new MeshError('upstream_timeout', `${endpoint.address} did not answer the upgrade in time`, { cause: result.error })
            : new MeshError('upstream_reset', `${endpoint.address} closed the connection during the upgrade`, { cause: result.error });
    endpoint.recorder.finished(failure?.status ?? result.status ?? 101, result.handshakeMs / 1000);
    ctx.routeFinished?.(failure?.status ?? result.status ?? 101);
    ctx.witness.settle({ endpoint: endpoint.address, status: failure?.status ?? result.status ?? 101, errorCode: failure?.code, fault: faultName });
    if (failure !== undefined) {
      log.warn(
        { service: ctx.service, endpoint: endpoint.address, code: failure.code, cause: (result.error as NodeJS.ErrnoException).code ?? result.error?.message },
        failure.message,
      );
      sendRawError(socket, failure);
    }
  });
}

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
