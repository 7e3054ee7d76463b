/**
 * Raw TCP through meshd: each accepted connection is balanced to an endpoint
 * and spliced to it. A connect failure is retried on another endpoint (no
 * byte has been sent yet); once connected, bytes flow both ways with
 * backpressure, half-closes are passed on, and an idle connection is closed.
 */
import { connect, type Socket } from 'node:net';
import type { MeshTlsClient } from '../tls/client.ts';

export interface TcpTarget {
  host: string;
  port: number;
  /** Set when the endpoint is another meshd: the stream goes over mTLS to its `service`. */
  identity?: string | undefined;
  /**
   * Kubernetes mesh mode: the target is that node's meshd (host, port, identity) and the stream is
   * for one of its pods, named by this first line (protocol/pod-preamble.ts).
   */
  podPreamble?: string | undefined;
}

/**
 * Connects to `target`; resolves with the socket once connected (after the TLS handshake for a
 * meshd endpoint), rejects on failure or timeout.
 */
export function connectTcp(target: TcpTarget, timeoutMs: number, service: string, tls: MeshTlsClient | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const secure = target.identity !== undefined;
    if (secure && tls === undefined) {
      reject(Object.assign(new Error('an endpoint with an identity needs TLS material'), { code: 'ERR_MESHD_NO_TLS' }));
      return;
    }
    const mesh = tls as MeshTlsClient;
    const upstream: Socket = !secure
      ? connect({ host: target.host, port: target.port, noDelay: true, allowHalfOpen: true })
      : target.podPreamble === undefined
        ? mesh.connectTcp(target.host, target.port, service, target.identity as string)
        : mesh.connectPodTcp(target.host, target.port, target.identity as string);
    const timer = setTimeout(() => {
      upstream.destroy();
      reject(Object.assign(new Error(`connect timeout after ${timeoutMs}ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    upstream.once(secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      upstream.removeListener('error', onError);
      if (target.podPreamble !== undefined) upstream.write(target.podPreamble);
      resolve(upstream);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    upstream.once('error', onError);
  });
}

/** Splices two connected sockets; `onClose` runs once when both are gone. */
export function splice(client: Socket, upstream: Socket, idleTimeoutMs: number, onClose: (error: Error | undefined) => void): void {
  let closed = 0;
  let firstError: Error | undefined;
  const done = (): void => {
    if (++closed === 2) onClose(firstError);
  };
  for (const [from, to] of [
    [client, upstream],
    [upstream, client],
  ] as const) {
    from.on('error', (err) => {
      firstError ??= err;
      to.destroy();
    });
    from.once('close', done);
    from.setTimeout(idleTimeoutMs, () => {
      from.destroy();
      to.destroy();
    });
    from.pipe(to);
  }
}
