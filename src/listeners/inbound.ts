/**
 * The inbound listener: mTLS only. A client certificate is required and
 * verified against the trust bundle (TLS 1.3 by default); the peer identity
 * is its SPIFFE URI SAN. HTTP requests name the local service in the Host
 * header; raw TCP streams (ALPN "meshd-tcp") name it in the SNI. Each local
 * service's policy decides who gets in; a refused call gets 403 `forbidden`
 * and the identity goes to the log, not the body. Any identity header the
 * client sent is dropped and the verified one set.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Clock } from '../clock.ts';
import { MeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { connectTcp, splice } from '../proxy/tcp-forwarder.ts';
import { upgradeRequestHeaders, type UpgradeForwarder } from '../proxy/upgrade-forwarder.ts';
import { LOCAL_CONNECT_TIMEOUT_MS, type LocalService } from '../service/local.ts';
import { CLIENT_GONE } from '../stack/exchange.ts';
import { sendRawError } from '../stack/respond.ts';
import { nodeExchange, sendError } from './node-exchange.ts';
import { TCP_ALPN } from '../tls/client.ts';
import { peerIdentity } from '../identity/spiffe.ts';
import { PEER_IDENTITY_HEADER } from '../protocol/fields.ts';
import { secureOptions } from '../tls/material.ts';
import type { TlsState } from '../tls/tls-state.ts';
import { bindServer, listenTarget } from './bind.ts';
import { distrustConnection, framingProblem, isDistrusted, onDistrustedConnection } from './framing.ts';
import { serviceName } from './request-target.ts';

export interface InboundDeps {
  local(name: string): LocalService | undefined;
  handshakeError(reason: string): void;
  /** A completed handshake; `resumed` when a TLS session was reused (no full handshake). */
  handshake(resumed: boolean): void;
  authorization(service: string, allowed: boolean): void;
  /** Relays WebSocket upgrades to the local targets. */
  readonly upgrades: UpgradeForwarder;
  readonly log: Logger;
  readonly clock: Clock;
}

export class InboundListener {
  readonly server: TlsServer;
  private readonly http: HttpServer;
  private readonly identities = new WeakMap<Socket, string>();
  private readonly streams = new Set<Socket>();
  private readonly deps: InboundDeps;
  active = 0;

  constructor(tls: TlsState, settings: { maxConnections: number; handshakeTimeoutMs: number }, deps: InboundDeps) {
    this.deps = deps;
    this.server = createTlsServer({
      ...secureOptions(tls.current, tls.settings.minVersion),
      requestCert: true,
      // Verified below, on the finished handshake, so that each refusal is logged with its reason
      // (OpenSSL's own rejection reaches Node as a bare "socket hang up"); no byte of an
      // unverified peer is ever read.
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1', TCP_ALPN],
      handshakeTimeout: settings.handshakeTimeoutMs,
    });
    this.server.maxConnections = settings.maxConnections;
    // Rotation: new handshakes use the new material; established connections keep theirs.
    tls.subscribe((m) => this.server.setSecureContext(secureOptions(m, tls.settings.minVersion)));
    this.server.on('secureConnection', (socket: TLSSocket) => this.onSecureConnection(socket));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      const reason = handshakeReason(err);
      deps.handshakeError(reason);
      deps.log.info({ listener: 'inbound', reason, detail: err.message, remote: socket.remoteAddress }, `TLS handshake refused: ${reason}`);
      socket.destroy();
    });
    this.http = createHttpServer(
      {
        headersTimeout: 10_000,
        requestTimeout: 0,
        keepAliveTimeout: 60_000,
        // WebSocket is the one upgrade meshd relays, as on the outbound side.
        shouldUpgradeCallback: (req) => /^websocket$/i.test(req.headers.upgrade ?? ''),
      },
      (req, res) => this.onRequest(req, res),
    );
    this.http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head));
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable || isDistrusted(socket)) return void socket.destroy();
      sendRawError(socket, new MeshError(err.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large' : 'bad_request', 'malformed HTTP request'));
    });
  }

  /** A connection the supervisor accepted on a socket-activated listener and handed to this worker; capped as at accept. */
  adopt(socket: Socket): void {
    if (this.adopted >= this.server.maxConnections) {
      socket.destroy();
      return;
    }
    this.adopted++;
    socket.once('close', () => this.adopted--);
    this.server.emit('connection', socket);
  }

  private adopted = 0;

  /** Binds host:port, or adopts the inherited listening socket `fd` (socket activation). */
  async listen(host: string, port: number, fd?: number, reusePort = false): Promise<AddressInfo> {
    const address = await bindServer(this.server, listenTarget(host, port, fd, { backlog: 4096, reusePort }), (err) =>
      this.deps.log.error({ listener: 'inbound', err }, 'listener error; still serving'),
    );
    // The HTTP server never binds; 'listening' starts its header and idle timeout checks.
    this.http.emit('listening');
    return address;
  }

  startDrain(): void {
    this.server.close();
    this.http.close();
    this.http.closeIdleConnections();
  }

  closeAll(): void {
    this.http.closeAllConnections();
    for (const s of this.streams) s.destroy();
  }

  private onSecureConnection(socket: TLSSocket): void {
    socket.on('error', () => {});
    if (!socket.authorized) {
      const cert = socket.getPeerCertificate();
      const reason = Object.keys(cert).length === 0 ? 'no_client_certificate' : verifyReason(String(socket.authorizationError));
      this.deps.handshakeError(reason);
      this.deps.log.info(
        { listener: 'inbound', reason, detail: String(socket.authorizationError), remote: socket.remoteAddress },
        `TLS handshake refused: ${reason}`,
      );
      socket.destroy();
      return;
    }
    this.deps.handshake(socket.isSessionReused());
    const identity = peerIdentity(socket.getPeerCertificate());
    if (identity === undefined) {
      this.deps.handshakeError('no_identity');
      this.deps.log.info({ listener: 'inbound', remote: socket.remoteAddress }, 'TLS peer refused: its certificate carries no SPIFFE identity');
      socket.destroy();
      return;
    }
    if (socket.alpnProtocol === TCP_ALPN) {
      this.onTcpStream(socket, identity);
      return;
    }
    this.identities.set(socket, identity);
    this.http.emit('connection', socket);
  }

  private onTcpStream(socket: TLSSocket, identity: string): void {
    const name = typeof socket.servername === 'string' ? socket.servername : '';
    const local = this.deps.local(name);
    if (local === undefined || !local.config.tcp) {
      this.deps.log.warn({ listener: 'inbound', service: name, identity }, 'TCP stream for an unknown local TCP service refused');
      socket.destroy();
      return;
    }
    const verdict = local.authorize(identity);
    this.deps.authorization(name, verdict.allowed);
    if (!verdict.allowed) {
      this.deps.log.warn({ event: 'forbidden', service: name, identity, rule: verdict.rule }, `refused ${identity} for ${name}: ${verdict.rule}`);
      socket.destroy();
      return;
    }
    socket.pause();
    this.streams.add(socket);
    this.active++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.streams.delete(socket);
      this.active--;
    };
    connectTcp(local.config.target, LOCAL_CONNECT_TIMEOUT_MS, name, undefined).then(
      (target) => {
        if (socket.destroyed) {
          target.destroy();
          release();
          return;
        }
        splice(socket, target, 3_600_000, release);
        socket.resume();
      },
      (err: unknown) => {
        this.deps.log.warn(
          { service: name, target: `${local.config.target.host}:${local.config.target.port}`, cause: (err as NodeJS.ErrnoException).code },
          'local TCP target refused the connection',
        );
        socket.destroy();
        release();
      },
    );
  }

  /**
   * Who may reach which local service, the same for requests and upgrades: a verified identity, a
   * local HTTP service named by Host, and that service's policy. Returns the service, or the error
   * to answer with (a refusal is logged with the rule that decided it).
   */
  private admit(req: IncomingMessage): { local: LocalService; identity: string } | MeshError {
    const identity = this.identities.get(req.socket);
    if (identity === undefined) return new MeshError('forbidden', 'no verified peer identity');
    const name = serviceName(req.headers.host ?? '');
    const local = name === undefined ? undefined : this.deps.local(name);
    if (local === undefined || local.config.tcp) return new MeshError('unknown_service', `no local service named "${name ?? ''}"`);
    const verdict = local.authorize(identity);
    this.deps.authorization(local.config.name, verdict.allowed);
    if (!verdict.allowed) {
      this.deps.log.warn(
        { event: 'forbidden', service: local.config.name, identity, rule: verdict.rule },
        `refused ${identity} for ${local.config.name}: ${verdict.rule}`,
      );
      return new MeshError('forbidden', `calls to "${local.config.name}" from this identity are not allowed`);
    }
    return { local, identity };
  }

  /**
   * A WebSocket upgrade from another meshd: checked exactly as a request (verified identity,
   * framing, the local service's policy), then relayed to the local target with the verified
   * identity in place of any the caller sent.
   */
  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const started = this.deps.clock();
    socket.on('error', () => {});
    socket.once('end', () => socket.end());
    const framing = framingProblem(req);
    const admitted = framing?.error ?? this.admit(req);
    if (admitted instanceof MeshError) {
      sendRawError(socket, admitted);
      return;
    }
    const { local, identity } = admitted;
    this.streams.add(socket);
    this.active++;
    socket.once('close', () => {
      this.streams.delete(socket);
      this.active--;
    });
    const target = { host: local.config.target.host, port: local.config.target.port, tls: undefined };
    const headers = upgradeRequestHeaders(req, [PEER_IDENTITY_HEADER, identity]);
    const limits = { connectTimeoutMs: LOCAL_CONNECT_TIMEOUT_MS, handshakeTimeoutMs: local.config.timeoutMs };
    this.deps.upgrades.forward(req, socket, head, target, headers, limits, started, this.deps.clock, (result) => {
      if (result.error === undefined) return;
      const code = result.outcome === 'connect_failed' ? 'connect_failed' : result.outcome === 'timeout' ? 'upstream_timeout' : 'upstream_reset';
      this.deps.log.warn(
        { service: local.config.name, code, cause: (result.error as NodeJS.ErrnoException).code ?? result.error.message },
        'WebSocket upgrade to the local target failed',
      );
      sendRawError(socket, new MeshError(code, `the local target of "${local.config.name}" could not take the upgrade`));
    });
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const started = this.deps.clock();
    if (onDistrustedConnection(req)) return void res.destroy();
    const framing = framingProblem(req);
    if (framing !== undefined) {
      if (framing.close) distrustConnection(req, res);
      sendError(res, framing.error, framing.close);
      return;
    }
    const admitted = this.admit(req);
    if (admitted instanceof MeshError) {
      sendError(res, admitted);
      return;
    }
    const { local, identity } = admitted;
    const url = req.url ?? '/';
    const ex = nodeExchange(req, res, url.startsWith('/') ? url : '/', undefined, started);
    ex.extraFields = [PEER_IDENTITY_HEADER, identity];
    this.active++;
    res.once('close', () => {
      this.active--;
      if (!res.writableEnded) ex.cancel(CLIENT_GONE);
    });
    local.handler(ex).catch((err: unknown) => {
      this.deps.log.error({ err, service: local.config.name }, 'unhandled inbound failure');
      sendError(res, new MeshError('internal', 'internal error'));
    });
  }
}

/** A stable reason for a client certificate that failed verification. */
function verifyReason(code: string): string {
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'certificate_expired';
    case 'CERT_NOT_YET_VALID':
      return 'certificate_not_yet_valid';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
      return 'untrusted_certificate';
    default:
      return 'invalid_certificate';
  }
}

/** A stable reason for a refused handshake, for logs and the metric. */
function handshakeReason(err: NodeJS.ErrnoException): string {
  const code = err.code ?? '';
  const text = err.message;
  if (code === 'ECONNRESET') return 'reset';
  if (/peer did not return a certificate|PEER_DID_NOT_RETURN_A_CERTIFICATE|certificate required/i.test(text)) return 'no_client_certificate';
  if (/certificate has expired|CERTIFICATE_EXPIRED/i.test(text)) return 'certificate_expired';
  if (/not yet valid|CERTIFICATE_NOT_YET_VALID/i.test(text)) return 'certificate_not_yet_valid';
  if (/unknown ca|UNKNOWN_CA|unable to get (local )?issuer|self.signed|certificate verify failed/i.test(text)) return 'untrusted_certificate';
  if (/version|unsupported protocol|UNSUPPORTED_PROTOCOL/i.test(text)) return 'protocol_version';
  if (/wrong version number|http request|WRONG_VERSION_NUMBER|HTTP_REQUEST|packet length|record/i.test(text)) return 'not_tls';
  if (code === 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA') return 'untrusted_certificate';
  if (/timeout|timed out/i.test(text)) return 'handshake_timeout';
  return 'handshake_failed';
}
