/**
 * A TCP connection through a service: balanced per connection, with connect
 * failures retried on another endpoint (no byte has been sent yet) within the
 * retry budget, then spliced. The attempt counts in flight on its endpoint
 * until the connection closes.
 */
import type { Socket } from 'node:net';
import type { Clock } from '../clock.ts';
import { MeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { AttemptPicker } from '../stack/attempt.ts';
import type { ServiceRecorder } from '../stack/observer.ts';
import type { RetryBudget } from '../stack/retry-budget.ts';
import type { MeshTlsClient } from '../tls/client.ts';
import { connectTcp, splice } from './tcp-forwarder.ts';
import { encodePodPreamble } from '../protocol/pod-preamble.ts';
import type { Endpoint } from '../balancer/endpoint.ts';
import type { InjectedFault } from './websocket-relay.ts';
import type { TunnelWitness } from '../stack/tunnel-witness.ts';

export interface TcpRelayContext {
  readonly service: string;
  readonly attempts: AttemptPicker;
  readonly budget: RetryBudget;
  readonly recorder: ServiceRecorder;
  readonly log: Logger;
  readonly clock: Clock;
  readonly tls: MeshTlsClient | undefined;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Total attempts, the first included. */
  readonly attemptsAllowed: number;
  /** The fault injection that acts on a connection to this endpoint; an abort cuts the connection (TCP has no status). */
  readonly fault?: ((endpoint: Endpoint) => InjectedFault | undefined) | undefined;
  /** The connection's span, dependency-map edge and access line (its owner ends it when the client socket closes). */
  readonly witness: TunnelWitness;
}

/** `callerFields`: the calling pod, named to a pod's node meshd (Kubernetes mesh mode). */
export async function relayTcp(ctx: TcpRelayContext, client: Socket, callerFields?: readonly string[]): Promise<void> {
  const { clock, log } = ctx;
  ctx.budget.recordRequest(clock());
  let avoid: Parameters<AttemptPicker['begin']>[1];
  for (let attempt = 1; ; attempt++) {
    let lease;
    try {
      // Every local client has the same address, so TCP is never hashed.
      lease = ctx.attempts.begin(undefined, avoid);
    } catch (err) {
      const code = err instanceof MeshError ? err.code : 'internal';
      ctx.recorder.tcpConnection('none', 'no_endpoints');
      ctx.witness.settle({ endpoint: undefined, errorCode: code });
      log.warn({ service: ctx.service, code }, `TCP connection refused: ${(err as Error).message}`);
      client.destroy();
      return;
    }
    const endpoint = lease.endpoint;
    const fault = ctx.fault?.(endpoint);
    if (fault !== undefined && fault.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
    if (fault?.abort !== undefined) {
      lease.finish('reset');
      ctx.recorder.tcpConnection(endpoint.address, 'fault_abort');
      ctx.witness.settle({ endpoint: endpoint.address, errorCode: 'upstream_reset', fault: fault.name });
      log.warn({ service: ctx.service, endpoint: endpoint.address, fault: fault.name }, `TCP connection cut by fault "${fault.name}"`);
      client.destroy();
      return;
    }
    let upstream: Socket;
    try {
      const via = endpoint.spec.via;
      const target =
        via === undefined
          ? endpoint.spec
          : {
              host: via.host,
              port: via.port,
              identity: via.identity,
              // The receiving meshd's span is this one's child: the trace context travels in the preamble.
              podPreamble: encodePodPreamble(via.service, endpoint.address, withTraceparent(callerFields, ctx.witness.traceparent)),
            };
      upstream = await connectTcp(target, ctx.connectTimeoutMs, ctx.service, ctx.tls);
    } catch (err) {
      lease.finish('connect_failed');
      ctx.recorder.tcpConnection(endpoint.address, 'connect_failed');
      const retry = attempt < ctx.attemptsAllowed && !client.destroyed && ctx.budget.tryWithdraw(clock());
      log.warn(
        { service: ctx.service, endpoint: endpoint.address, code: 'connect_failed', cause: (err as NodeJS.ErrnoException).code, retry },
        'TCP connect failed',
      );
      if (!retry) {
        ctx.witness.settle({ endpoint: endpoint.address, errorCode: 'connect_failed', fault: fault?.name });
        client.destroy();
        return;
      }
      ctx.recorder.retried('connect_failed');
      ctx.witness.event('meshd.retry', { reason: 'connect_failed', endpoint: endpoint.address });
      avoid = endpoint;
      continue;
    }
    lease.report('success');
    ctx.recorder.tcpConnection(endpoint.address, 'connected');
    ctx.witness.settle({ endpoint: endpoint.address, fault: fault?.name });
    if (client.destroyed) {
      upstream.destroy();
      lease.release();
      return;
    }
    splice(client, upstream, ctx.idleTimeoutMs, () => lease.release());
    client.resume();
    return;
  }
}

function withTraceparent(fields: readonly string[] | undefined, traceparent: string | undefined): readonly string[] | undefined {
  return traceparent === undefined ? fields : [...(fields ?? []), 'traceparent', traceparent];
}
