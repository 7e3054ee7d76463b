/**
 * Connection upgrades (WebSocket) through http-proxy-3, the job that package
 * does well: it relays the handshake, then splices the two sockets. meshd
 * picks the endpoint and accounts the tunnel; this module only moves bytes.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { ProxyServer } from 'http-proxy-3';
import type { ClientRequest } from 'node:http';
import type { Outcome } from '../feedback/outcome.ts';

/** Where the tunnel ended up: established (then closed) or failed before the upgrade. */
export interface UpgradeResult {
  outcome: Outcome;
  /** Milliseconds to the upstream's answer (101 or otherwise), for latency observations. */
  handshakeMs: number;
  /** The upstream's status when it refused the upgrade. */
  status: number | undefined;
  error: Error | undefined;
}

const REQUEST_STARTED = Symbol('meshd.upgradeStarted');
type TrackedRequest = IncomingMessage & { [REQUEST_STARTED]?: (proxyReq: ClientRequest) => void };

export class UpgradeForwarder {
  /** Loaded with the first upgrade: a host without WebSocket traffic never holds http-proxy-3 in memory. */
  private proxy: Promise<ProxyServer> | undefined;

  private load(): Promise<ProxyServer> {
    this.proxy ??= import('http-proxy-3').then(({ createProxyServer }) => {
      const proxy = createProxyServer({ ws: true, xfwd: true, prependPath: false });
      // Route each outgoing handshake back to the call that started it.
      proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => (req as TrackedRequest)[REQUEST_STARTED]?.(proxyReq));
      // Errors arrive on the per-call callback; this keeps an unhandled 'error' from throwing.
      proxy.on('error', () => {});
      return proxy;
    });
    return this.proxy;
  }

  /**
   * Relays an upgrade to `target` ("http://host:port"). `onHandshake` fires once with the result
   * of the handshake; on failure the caller answers and closes the client socket.
   */
  forward(req: IncomingMessage, socket: Socket, head: Buffer, target: string, connectTimeoutMs: number, started: number, now: () => number, onHandshake: (result: UpgradeResult) => void): void {
    let reported = false;
    const report = (result: UpgradeResult): void => {
      if (reported) return;
      reported = true;
      onHandshake(result);
    };
    (req as TrackedRequest)[REQUEST_STARTED] = (proxyReq) => {
      proxyReq.once('upgrade', () => report({ outcome: 'success', handshakeMs: now() - started, status: 101, error: undefined }));
      proxyReq.once('response', (res: IncomingMessage) => {
        const status = res.statusCode ?? 502;
        report({ outcome: status >= 500 ? 'http_5xx' : 'success', handshakeMs: now() - started, status, error: undefined });
      });
    };
    const failed = (err: Error): void => {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      const outcome: Outcome = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ENOTFOUND|EAI_AGAIN/.test(code) ? 'connect_failed' : 'reset';
      report({ outcome, handshakeMs: now() - started, status: undefined, error: err });
    };
    this.load().then(
      (proxy) => proxy.ws(req, socket, head, { target, connectTimeout: connectTimeoutMs }, failed),
      (err: unknown) => failed(err as Error),
    );
  }

  close(): void {
    void this.proxy?.then((proxy) => proxy.close());
  }
}
