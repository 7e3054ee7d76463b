/**
 * The inbound listener: mTLS only. A client certificate is required and
 * verified against the trust bundle (TLS 1.3 by default); the peer identity
 * is its SPIFFE URI SAN. HTTP requests name the local service in the Host
 * header; raw TCP streams (ALPN "meshd-tcp") name it in the SNI. Each local
 * service's policy decides who gets in; a refused call gets 403 `forbidden`
 * and the identity goes to the log, not the body. Any identity header the
 * client sent is dropped and the verified one set.
 */
import { logRefusedRequest, type ExchangeWitnesses } from '../stack/trace.ts';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Clock } from '../clock.ts';
import { MeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { connectTcp, splice } from '../proxy/tcp-forwarder.ts';
import { handshakeFields, upgradeRequestHeaders, type UpgradeForwarder } from '../proxy/upgrade-forwarder.ts';
import { LOCAL_CONNECT_TIMEOUT_MS, type LocalService } from '../service/local.ts';
import { CLIENT_GONE } from '../stack/exchange.ts';
import { sendRawError } from '../stack/respond.ts';
import { nodeExchange, sendError } from './node-exchange.ts';
import { POD_TCP_ALPN, TCP_ALPN } from '../tls/client.ts';
import { MAX_PREAMBLE_BYTES, parsePodPreamble } from '../protocol/pod-preamble.ts';
import { peerIdentity } from '../identity/spiffe.ts';
import { PEER_IDENTITY_HEADER } from '../protocol/fields.ts';
import { secureOptions } from '../tls/material.ts';
import type { TlsState } from '../tls/tls-state.ts';
import { bindServer, listenTarget } from './bind.ts';
import { distrustConnection, framingProblem, isDistrusted, onDistrustedConnection } from './framing.ts';
import { serviceName } from './request-target.ts';
import { MeshInbound, type Delivery } from '../service/mesh-inbound.ts';

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
  /** Kubernetes mesh mode: deliveries to this node's pods asked by other nodes' meshds; undefined otherwise. */
  readonly mesh?: MeshInbound | undefined;
  /** Access logs of requests no local service took; undefined: none written. */
  readonly witnesses?: ExchangeWitnesses | undefined;
}

export class InboundListener {
  readonly server: TlsServer;
  private readonly http: HttpServer;
  private readonly identities = new WeakMap<Socket, string>();
  private readonly streams = new Set<Socket>();
  /** Verified peer connections handed to the HTTP server, until they close. */
  private readonly connections = new Set<Socket>();
  private readonly deps: InboundDeps;
  private draining = false;
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
      ALPNProtocols: ['http/1.1', TCP_ALPN, POD_TCP_ALPN],
      handshakeTimeout: settings.handshakeTimeoutMs,
      // TCP streams pass half-closes on (a caller done sending still reads the answer); the HTTP
      // server, which expects half-open sockets as its own listener would give it, ends them itself.
      allowHalfOpen: true,
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

  /** Stops accepting; responses from now on carry `Connection: close`, idle connections stay open until closeIdle() (see the outbound listener). */
  startDrain(): void {
    this.draining = true;
    this.server.close();
  }

  /** Peer connections handed to the HTTP server and still open, busy or idle. */
  get openConnections(): number {
    return this.connections.size;
  }

  /** The drain's grace is over: closes connections with no request in progress. */
  closeIdle(): void {
    this.http.close(); // also closes its idle connections
  }

  /** Kubernetes mesh mode: the pod targets delivered to, for /debug/state. */
  meshStatus(): unknown {
    return this.deps.mesh?.status();
  }

  closeMesh(): Promise<unknown> {
    return this.deps.mesh?.close() ?? Promise.resolve();
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
    if (socket.alpnProtocol === POD_TCP_ALPN) {
      this.onPodTcpStream(socket, identity);
      return;
    }
    this.identities.set(socket, identity);
    this.connections.add(socket);
    socket.once('close', () => this.connections.delete(socket));
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
    const witness = local.witnessTunnel('tcp', identity, socket, { fields: undefined });
    const verdict = local.authorize(identity);
    this.deps.authorization(name, verdict.allowed);
    if (!verdict.allowed) {
      this.deps.log.warn({ event: 'forbidden', service: name, identity, rule: verdict.rule }, `refused ${identity} for ${name}: ${verdict.rule}`);
      witness.settle({ endpoint: undefined, errorCode: 'forbidden' });
      socket.destroy();
      return;
    }
    const refused = local.refusal(undefined, identity);
    if (refused !== undefined) {
      this.deps.log.warn({ event: refused.code, service: name, identity }, refused.message);
      witness.settle({ endpoint: undefined, errorCode: refused.code });
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
        witness.settle({ endpoint: local.targetAddress });
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
        witness.settle({ endpoint: local.targetAddress, errorCode: 'connect_failed' });
        socket.destroy();
        release();
      },
    );
  }

  /**
   * Kubernetes mesh mode: raw TCP for one of this node's pods. The first line names the Service,
   * the pod and the caller; it is admitted exactly as an HTTP request naming them (a node's
   * meshd, a ready pod of the Service here, the Service's policy), then spliced to the pod. TCP
   * has no error to answer with: a refusal closes the stream and is logged with its code.
   */
  private onPodTcpStream(socket: TLSSocket, identity: string): void {
    const mesh = this.deps.mesh;
    const refuse = (code: string, detail: string): void => {
      this.deps.log.warn({ listener: 'inbound', event: 'pod_tcp_refused', code, identity, detail }, `TCP stream for a pod refused: ${detail}`);
      socket.destroy();
    };
    if (mesh === undefined) {
      refuse('bad_request', 'this meshd is not in Kubernetes mesh mode');
      return;
    }
    this.streams.add(socket);
    this.active++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.streams.delete(socket);
      this.active--;
    };
    socket.once('close', release);
    void readPreamble(socket, MAX_PREAMBLE_BYTES, PREAMBLE_TIMEOUT_MS)
      .then(async (read) => {
        if (typeof read === 'string') {
          refuse('bad_request', read);
          return;
        }
        const fields = parsePodPreamble(read.line);
        if (typeof fields === 'string') {
          refuse('bad_request', fields);
          return;
        }
        const admitted = await mesh.admit(fields, identity);
        if (admitted instanceof MeshError) {
          refuse(admitted.code, admitted.message);
          return;
        }
        // The sending meshd's span is the parent: its trace context came in the preamble.
        const witness = admitted.target.witnessTunnel('tcp', admitted.caller, socket, { fields: { field: (name) => fields[name] } });
        const { host, port } = admitted.target.config.target;
        const target = await connectTcp({ host, port }, LOCAL_CONNECT_TIMEOUT_MS, admitted.service, undefined).catch((err: unknown) => {
          witness.settle({ endpoint: admitted.target.targetAddress, errorCode: 'connect_failed' });
          throw err;
        });
        witness.settle({ endpoint: admitted.target.targetAddress });
        if (socket.destroyed) return void target.destroy();
        if (read.rest.length > 0) target.write(read.rest);
        splice(socket, target, 3_600_000, release);
        socket.resume();
      })
      .catch((err: unknown) => refuse('connect_failed', `the pod refused the connection (${(err as NodeJS.ErrnoException).code ?? String(err)})`));
  }

  /**
   * Who may reach which local service, the same for requests and upgrades: a verified identity, a
   * local HTTP service named by Host, and that service's policy; or, in Kubernetes mesh mode, a
   * node's meshd naming one of this node's pods (service/mesh-inbound.ts). Returns where to
   * deliver, or the error to answer with (a refusal is logged with the rule that decided it).
   */
  private admit(req: IncomingMessage): Delivery | MeshError | Promise<Delivery | MeshError> {
    const identity = this.identities.get(req.socket);
    if (identity === undefined) return new MeshError('forbidden', 'no verified peer identity');
    if (MeshInbound.asks(req.headers)) {
      return (
        this.deps.mesh?.admit(req.headers, identity) ?? new MeshError('bad_request', 'this meshd is not in Kubernetes mesh mode; name a local service in Host')
      );
    }
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
    return { service: local.config.name, target: local, fields: [PEER_IDENTITY_HEADER, identity], caller: identity };
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
    if (admitted instanceof Promise) {
      socket.pause();
      this.pending(
        socket,
        admitted,
        (delivery) => this.upgradeTo(req, socket, head, delivery, started),
        (err) => sendRawError(socket, err),
      );
      return;
    }
    this.upgradeTo(req, socket, head, admitted, started);
  }

  private upgradeTo(req: IncomingMessage, socket: Socket, head: Buffer, admitted: Delivery | MeshError, started: number): void {
    if (admitted instanceof MeshError) {
      sendRawError(socket, admitted);
      return;
    }
    const { target: local, fields } = admitted;
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const witness = local.witnessTunnel('websocket', admitted.caller, socket, { fields: handshakeFields(req), method, path });
    const refused = local.refusal({ method, target: path }, admitted.caller);
    if (refused !== undefined) {
      witness.settle({ endpoint: undefined, errorCode: refused.code });
      sendRawError(socket, refused);
      return;
    }
    this.streams.add(socket);
    this.active++;
    socket.once('close', () => {
      this.streams.delete(socket);
      this.active--;
    });
    const target = { host: local.config.target.host, port: local.config.target.port, tls: undefined };
    const headers = upgradeRequestHeaders(req, fields);
    // Tracing: this hop's span is the parent of the target's, as on the HTTP path.
    witness.traceFields(headers);
    const limits = { connectTimeoutMs: LOCAL_CONNECT_TIMEOUT_MS, handshakeTimeoutMs: local.config.timeoutMs };
    this.deps.upgrades.forward(req, socket, head, target, headers, limits, started, this.deps.clock, (result) => {
      if (result.error === undefined) {
        witness.settle({ endpoint: local.targetAddress, status: result.status ?? 101 });
        return;
      }
      const code = result.outcome === 'connect_failed' ? 'connect_failed' : result.outcome === 'timeout' ? 'upstream_timeout' : 'upstream_reset';
      witness.settle({ endpoint: local.targetAddress, errorCode: code });
      this.deps.log.warn(
        { service: local.config.name, code, cause: (result.error as NodeJS.ErrnoException).code ?? result.error.message },
        'WebSocket upgrade to the local target failed',
      );
      sendRawError(socket, new MeshError(code, `the local target of "${local.config.name}" could not take the upgrade`));
    });
  }

  /** Waits for an admission decision (a namespace's first list); the wait counts in flight, and a caller that leaves meanwhile is dropped. */
  private pending(socket: Socket, decision: Promise<Delivery | MeshError>, go: (d: Delivery | MeshError) => void, failed: (err: MeshError) => void): void {
    this.active++;
    decision.then(
      (d) => {
        this.active--;
        if (!socket.destroyed) go(d);
      },
      (err: unknown) => {
        this.active--;
        this.deps.log.error({ err }, 'inbound admission failed');
        if (!socket.destroyed) failed(new MeshError('internal', 'internal error'));
      },
    );
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const started = this.deps.clock();
    if (this.draining) res.shouldKeepAlive = false;
    if (onDistrustedConnection(req)) return void res.destroy();
    const framing = framingProblem(req);
    if (framing !== undefined) {
      if (framing.close) distrustConnection(req, res);
      this.refuse(req, res, framing.error, started, framing.close);
      return;
    }
    const admitted = this.admit(req);
    if (admitted instanceof Promise) {
      this.pending(
        req.socket,
        admitted,
        (delivery) => this.deliver(req, res, delivery, started),
        (err) => this.refuse(req, res, err, started),
      );
      return;
    }
    this.deliver(req, res, admitted, started);
  }

  /** Answers a request no local service takes (unknown, forbidden, misdirected), and writes its access line. */
  private refuse(req: IncomingMessage, res: ServerResponse, err: MeshError, started: number, closeConnection = false): void {
    sendError(res, err, closeConnection);
    const { witnesses } = this.deps;
    if (witnesses === undefined) return;
    logRefusedRequest(witnesses, {
      listener: 'inbound',
      service: localLabel(serviceName(req.headers.host ?? '')),
      method: req.method,
      path: req.url,
      caller: this.identities.get(req.socket) ?? req.socket.remoteAddress,
      status: err.status,
      error: err.code,
      durationMs: this.deps.clock() - started,
    });
  }

  private deliver(req: IncomingMessage, res: ServerResponse, admitted: Delivery | MeshError, started: number): void {
    if (admitted instanceof MeshError) {
      this.refuse(req, res, admitted, started);
      return;
    }
    const { target: local, fields } = admitted;
    const url = req.url ?? '/';
    const ex = nodeExchange(req, res, url.startsWith('/') ? url : '/', undefined, started);
    ex.extraFields = fields;
    ex.caller = admitted.caller;
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

/** How long a sending meshd may take to write a pod stream's first line. */
const PREAMBLE_TIMEOUT_MS = 5_000;

/** Reads one line (the preamble) and pauses the socket; the bytes after it are handed back. */
function readPreamble(socket: Socket, maxBytes: number, timeoutMs: number): Promise<{ line: string; rest: Buffer } | string> {
  return new Promise((resolve) => {
    let seen = Buffer.alloc(0);
    const finish = (result: { line: string; rest: Buffer } | string): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      seen = Buffer.concat([seen, chunk]);
      const end = seen.indexOf(10);
      if (end >= 0 && end <= maxBytes) finish({ line: seen.subarray(0, end).toString('utf8'), rest: seen.subarray(end + 1) });
      else if (seen.length > maxBytes) finish(`the first line is longer than ${maxBytes} bytes`);
    };
    const onClose = (): void => finish('the stream closed before its first line');
    const timer = setTimeout(() => finish(`no first line within ${timeoutMs} ms`), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
  });
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

/** A local service as its metrics and access lines name it. */
function localLabel(name: string | undefined): string | undefined {
  return name === undefined ? undefined : `local:${name}`;
}
