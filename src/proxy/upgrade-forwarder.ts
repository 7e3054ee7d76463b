/**
 * Connection upgrades (WebSocket) through http-proxy-3, the job that package
 * does well: it relays the handshake, then splices the two sockets. meshd
 * picks the endpoint, shapes the handshake's fields as on every other HTTP
 * path (hop-by-hop fields and meshd's own namespace dropped, forwarding fields
 * added), originates mTLS with the identity check for an endpoint that is
 * another meshd, bounds the handshake in time and accounts the tunnel; this
 * module only moves bytes.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { ProxyServer, ServerOptions } from 'http-proxy-3';
import type { Outcome } from '../protocol/outcome.ts';
import type { PeerTlsOptions } from '../tls/client.ts';
import { upstreamRequestHeaders, type HeaderObject } from './headers.ts';
import type { FieldReader } from '../stack/exchange.ts';

/** Where the tunnel ended up: established (then closed) or failed before the upgrade. */
export interface UpgradeResult {
  outcome: Outcome;
  /** Milliseconds to the upstream's answer (101 or otherwise), for latency observations. */
  handshakeMs: number;
  /** The upstream's status when it refused the upgrade. */
  status: number | undefined;
  error: Error | undefined;
}

/** Where an upgrade goes: host and port, and the mTLS settings when the endpoint is another meshd. */
export interface UpgradeTarget {
  readonly host: string;
  readonly port: number;
  /** Client certificate, trust bundle and the server identity check (MeshTlsClient.connectionOptions). */
  readonly tls: PeerTlsOptions | undefined;
}

export interface UpgradeLimits {
  readonly connectTimeoutMs: number;
  /** From the start to the upstream's answer: an endpoint that accepts and never answers is a timeout. */
  readonly handshakeTimeoutMs: number;
}

const REQUEST_STARTED = Symbol('meshd.upgradeStarted');
type TrackedRequest = IncomingMessage & { [REQUEST_STARTED]?: (proxyReq: ClientRequest) => void };

/**
 * The handshake's request fields for the next hop, as an object http-proxy-3 copies: the
 * caller's fields minus hop-by-hop ones and meshd's namespace, plus Via/X-Forwarded-For/
 * Forwarded and `extra` (the verified peer identity on the inbound side); Connection and Upgrade
 * are set again because this hop upgrades too.
 */
export function upgradeRequestHeaders(req: IncomingMessage, extra: readonly string[] = []): HeaderObject {
  const list = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, { clientAddress: req.socket.remoteAddress, authority: undefined });
  const out: HeaderObject = {};
  const add = (name: string, value: string): void => {
    const key = name.toLowerCase();
    const seen = out[key];
    out[key] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
  };
  for (let i = 0; i < list.length; i += 2) add(list[i]!, list[i + 1]!);
  for (let i = 0; i < extra.length; i += 2) add(extra[i]!, extra[i + 1]!);
  out['connection'] = 'Upgrade';
  out['upgrade'] = req.headers.upgrade ?? 'websocket';
  return out;
}

/** A handshake's fields by lowercase name (repeats joined), as the route table and the tracer read them. */
export function handshakeFields(req: IncomingMessage): FieldReader {
  return {
    field: (name) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    },
  };
}

export class UpgradeForwarder {
  /** Loaded with the first upgrade: a host without WebSocket traffic never holds http-proxy-3 in memory. */
  private proxy: Promise<ProxyServer> | undefined;

  private load(): Promise<ProxyServer> {
    this.proxy ??= import('http-proxy-3').then(({ createProxyServer }) => {
      // Forwarding fields are meshd's (upgradeRequestHeaders), not the package's.
      const proxy = createProxyServer({ ws: true, xfwd: false, prependPath: false });
      // Route each outgoing handshake back to the call that started it.
      proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => (req as TrackedRequest)[REQUEST_STARTED]?.(proxyReq));
      // Errors arrive on the per-call callback; this keeps an unhandled 'error' from throwing.
      proxy.on('error', () => {});
      return proxy;
    });
    return this.proxy;
  }

  /**
   * Relays an upgrade to `target` with the request fields `headers`. `onHandshake` fires once
   * with the result of the handshake; on failure the caller answers and closes the client socket.
   */
  forward(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    target: UpgradeTarget,
    headers: HeaderObject,
    limits: UpgradeLimits,
    started: number,
    now: () => number,
    onHandshake: (result: UpgradeResult) => void,
  ): void {
    let reported = false;
    let proxyReq: ClientRequest | undefined;
    // Until the connection (with its TLS handshake and identity check) is up, a failure is a failed connect.
    let connected = false;
    const report = (result: UpgradeResult): void => {
      if (reported) return;
      reported = true;
      clearTimeout(timer);
      onHandshake(result);
    };
    const timer = setTimeout(() => {
      const err = Object.assign(new Error(`no answer to the upgrade within ${limits.handshakeTimeoutMs} ms`), { code: 'ERR_MESHD_UPGRADE_TIMEOUT' });
      report({ outcome: 'timeout', handshakeMs: now() - started, status: undefined, error: err });
      proxyReq?.destroy();
    }, limits.handshakeTimeoutMs);
    (req as TrackedRequest)[REQUEST_STARTED] = (started_) => {
      proxyReq = started_;
      started_.once('socket', (s: Socket) => s.once(target.tls === undefined ? 'connect' : 'secureConnect', () => (connected = true)));
      started_.once('upgrade', () => report({ outcome: 'success', handshakeMs: now() - started, status: 101, error: undefined }));
      started_.once('response', (res: IncomingMessage) => {
        const status = res.statusCode ?? 502;
        report({ outcome: status >= 500 ? 'http_5xx' : 'success', handshakeMs: now() - started, status, error: undefined });
      });
    };
    const failed = (err: Error): void => {
      report({ outcome: connected ? 'reset' : 'connect_failed', handshakeMs: now() - started, status: undefined, error: err });
    };
    req.headers = headers;
    const host = target.host.includes(':') ? `[${target.host}]` : target.host;
    const options: ServerOptions =
      target.tls === undefined
        ? { target: `http://${host}:${target.port}`, connectTimeout: limits.connectTimeoutMs }
        : {
            // http-proxy-3 copies key, cert and ca from the target and the rest of the TLS settings
            // (the identity check, the minimum version) from `ssl`; verification stays on.
            target: { protocol: 'https:', host: target.host, port: target.port, key: target.tls.key, cert: target.tls.cert, ca: target.tls.ca },
            ssl: { checkServerIdentity: target.tls.checkServerIdentity, minVersion: target.tls.minVersion },
            secure: true,
            connectTimeout: limits.connectTimeoutMs,
          };
    this.load().then(
      (proxy) => proxy.ws(req, socket, head, options, failed),
      (err: unknown) => failed(err as Error),
    );
  }

  close(): void {
    void this.proxy?.then((proxy) => proxy.close());
  }
}
