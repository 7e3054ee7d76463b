/**
 * The outbound listener local apps call, HTTP/1.1 and h2c (prior knowledge)
 * on one port: the first bytes of a connection pick the protocol. Sockets
 * only: it parses the request target, finds the service, and hands an
 * Exchange to the service's stack. Malformed input is answered here with a
 * clear error code and never reaches a service; the connection cap keeps
 * descriptors for everything else.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createH2Server, type Http2Server, type Http2Session } from 'node:http2';
import { createServer as createTcpServer, Socket, type AddressInfo, type Server as TcpServer } from 'node:net';
import type { Clock } from '../clock.ts';
import type { MeshConfig } from '../config/types.ts';
import { callerIdentityIn } from '../protocol/fields.ts';
import { MeshError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ServiceRuntime } from '../service/runtime.ts';
import { CLIENT_GONE, type Exchange } from '../stack/exchange.ts';
import type { ServiceRecorder } from '../stack/observer.ts';
import { sendRawError } from '../stack/respond.ts';
import { nodeExchange, sendError } from './node-exchange.ts';
import { bindServer, listenTarget } from './bind.ts';
import { distrustConnection, framingProblem, isDistrusted, onDistrustedConnection } from './framing.ts';
import { parseRequestTarget, serviceName, type RequestTarget } from './request-target.ts';
import { logRefusedRequest, type ExchangeWitnesses } from '../stack/trace.ts';
import { SourceFilter } from './source-filter.ts';

/** The service a request is for, or why there is none; a promise while a service starts on its first call (Kubernetes mesh mode). */
export type Route = ServiceRuntime | MeshError | Promise<ServiceRuntime | MeshError>;

export interface OutboundDeps {
  /** `port` is the one the Host names (undefined: none). */
  route(service: string, port: number | undefined, remoteAddress: string | undefined): Route;
  /** Kubernetes mesh mode: the fields naming the calling pod, sent to the next hop; undefined when the caller is no known pod. */
  callerFields(remoteAddress: string | undefined): readonly string[] | undefined;
  /** Recorder for requests that name no configured service. */
  readonly unknownService: ServiceRecorder;
  clientError(listener: string, code: string): void;
  connectionRefused(listener: string): void;
  readonly log: Logger;
  readonly clock: Clock;
  /** The daemon's global in-flight ceiling, read per request (it follows reloads). */
  maxInFlight(): number;
  /** Access logs of requests no service took; undefined: none written. */
  readonly witnesses?: ExchangeWitnesses | undefined;
  /** Everything in flight in the daemon (HTTP, tunnels, TCP). */
  inFlight(): number;
}

/** HTTP/2 connections open with "PRI * HTTP/2.0"; no HTTP/1.1 method starts with "PRI". */
const H2_PREFACE_START = Buffer.from('PRI');

export class OutboundHttpListener {
  /** Accepts sockets and enforces the connection cap. */
  readonly acceptor: TcpServer;
  /** HTTP/1.1 handling (never listens itself). */
  readonly server: Server;
  /** h2c handling (never listens itself). */
  readonly h2: Http2Server;
  private readonly sessions = new Set<Http2Session>();
  private readonly sniffTimeoutMs: number;
  /** HTTP/1.1's header limit, applied to HTTP/2 header lists too (node:http2 only advertises it). */
  private readonly maxHeaderSizeBytes: number;
  /**
   * Callers allowed by source address; undefined allows all (loopback listeners). Ranges read at
   * start (the node's pod ranges) are set by the daemon before it binds; until then nobody.
   */
  allowFrom: SourceFilter | undefined;
  private readonly deps: OutboundDeps;
  private draining = false;
  /** Requests whose response has not closed yet, plus open tunnels; drain waits for this to reach 0. */
  active = 0;
  /** Upgraded connections (WebSocket tunnels); the HTTP server no longer tracks them. */
  private readonly tunnels = new Set<Socket>();
  /** Every accepted connection until it closes: the drain's grace lasts while any is open. */
  private readonly connections = new Set<Socket>();
  /** Connections whose first bytes have not arrived yet: no server owns them, so the drain closes them itself. */
  private readonly unsniffed = new Set<Socket>();

  constructor(settings: MeshConfig['outbound'], maxConnections: number, deps: OutboundDeps) {
    this.deps = deps;
    this.server = createServer(
      {
        maxHeaderSize: settings.maxHeaderSizeBytes,
        headersTimeout: settings.headersTimeoutMs,
        keepAliveTimeout: settings.idleTimeoutMs,
        // The service deadline bounds request bodies; Node's whole-request timer would cut long uploads.
        requestTimeout: 0,
        connectionsCheckingInterval: Math.min(1_000, settings.headersTimeoutMs),
        noDelay: true,
        // An HTTP/1.1 request without Host is refused by meshd (400 bad_request, JSON, counted), not by node:http's bare 400.
        requireHostHeader: false,
        // Only WebSocket upgrades are upgrades; "Upgrade: h2c" and others are served as HTTP/1.1.
        shouldUpgradeCallback: (req) => /^websocket$/i.test(req.headers.upgrade ?? ''),
      },
      (req, res) => this.onRequest(req, res),
    );
    this.h2 = createH2Server(
      {
        maxSessionMemory: 64,
        settings: { maxHeaderListSize: settings.maxHeaderSizeBytes, enablePush: false, maxConcurrentStreams: settings.http2MaxConcurrentStreams },
      },
      (req, res) => this.onRequest(req as unknown as IncomingMessage, res as unknown as ServerResponse),
    );
    this.h2.on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      session.setTimeout(settings.idleTimeoutMs, () => session.close());
      // A session that opens during the drain has its first stream served, then is told to go.
      if (this.draining) session.once('stream', () => session.close());
    });
    this.h2.on('sessionError', (err) => deps.log.info({ listener: 'outbound', err: err.message }, 'HTTP/2 session error'));
    this.sniffTimeoutMs = settings.headersTimeoutMs;
    this.maxHeaderSizeBytes = settings.maxHeaderSizeBytes;
    this.allowFrom = settings.allowFrom === undefined ? undefined : new SourceFilter([]);
    this.acceptor = createTcpServer({ noDelay: true }, (socket) => this.route(socket));
    this.acceptor.maxConnections = maxConnections;
    this.acceptor.on('drop', () => deps.connectionRefused('outbound'));
    this.server.on('clientError', (err, socket) => {
      if (socket instanceof Socket) this.onClientError(err, socket);
      else socket.destroy();
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server.on('connect', (_req, socket: Socket) => {
      deps.clientError('outbound', 'method_not_allowed');
      sendRawError(socket, new MeshError('method_not_allowed', 'CONNECT tunnels are not supported; send plain HTTP requests'));
    });
  }

  /** Binds host:port (shared with the other workers when `reusePort`), or adopts the inherited listening socket `fd`. */
  async listen(host: string, port: number, fd?: number, reusePort = false): Promise<AddressInfo> {
    const address = await bindServer(this.acceptor, listenTarget(host, port, fd, { backlog: 4096, reusePort }), (err) =>
      this.deps.log.error({ listener: 'outbound', err }, 'listener error; still serving'),
    );
    // The HTTP/1.1 server never binds; 'listening' starts its header and idle timeout checks.
    this.server.emit('listening');
    return address;
  }

  /**
   * A connection the supervisor accepted on a socket-activated listener and handed to this worker.
   * The connection cap applies as at accept.
   */
  adopt(socket: Socket): void {
    if (this.adopted >= this.acceptor.maxConnections) {
      this.deps.connectionRefused('outbound');
      socket.destroy();
      return;
    }
    this.adopted++;
    socket.once('close', () => this.adopted--);
    this.route(socket);
  }

  private adopted = 0;

  /** Hands a new connection to the HTTP/1.1 or the h2c server, by its first bytes. */
  private route(socket: Socket): void {
    socket.on('error', () => {}); // until a server owns it, a reset needs no report
    if (this.allowFrom !== undefined && !this.allowFrom.allows(socket.remoteAddress)) {
      this.deps.connectionRefused('outbound_source');
      this.deps.log.warn({ listener: 'outbound', remote: socket.remoteAddress }, 'connection from a source outside outbound.allowFrom refused');
      socket.destroy();
      return;
    }
    this.connections.add(socket);
    this.unsniffed.add(socket);
    socket.once('close', () => {
      this.connections.delete(socket);
      this.unsniffed.delete(socket);
    });
    // A connection that never speaks is closed like one that never finishes its headers.
    socket.setTimeout(this.sniffTimeoutMs, () => socket.destroy());
    socket.once('data', (chunk: Buffer) => {
      this.unsniffed.delete(socket);
      socket.pause();
      socket.setTimeout(0);
      socket.unshift(chunk);
      if (chunk.length >= 3 && chunk.subarray(0, 3).equals(H2_PREFACE_START)) {
        // The HTTP/2 session reads the unshifted bytes from the socket's buffer itself.
        this.h2.emit('connection', socket);
      } else {
        this.server.emit('connection', socket);
        socket.resume();
      }
    });
  }

  /**
   * Stops accepting and asks callers to reconnect elsewhere: GOAWAY to HTTP/2 sessions, and
   * `Connection: close` on every HTTP/1.1 response from now on. Idle connections stay open until
   * closeIdle(): a request may already be on its way on them (a fresh connection's first, a
   * keep-alive caller's next), and closing under it would fail a request meshd accepted.
   */
  startDrain(): void {
    this.draining = true;
    this.acceptor.close();
    for (const session of this.sessions) session.close();
  }

  /** Connections still open (HTTP/1.1, HTTP/2 and tunnels, busy or idle). */
  get openConnections(): number {
    return this.connections.size;
  }

  /** The drain's grace is over: closes connections with no request in progress (and stops the timeout checks). */
  closeIdle(): void {
    this.server.close(); // also closes the HTTP/1.1 server's idle connections
    for (const socket of this.unsniffed) socket.destroy();
    for (const session of this.sessions) session.close();
  }

  closeAll(): void {
    this.server.closeAllConnections();
    for (const session of this.sessions) session.destroy();
    for (const socket of this.tunnels) socket.destroy();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const started = this.deps.clock();
    if (this.draining) res.shouldKeepAlive = false;
    if (this.deps.inFlight() >= this.deps.maxInFlight()) {
      this.deps.clientError('outbound', 'overloaded');
      this.answerWithoutService(res, new MeshError('overloaded', 'meshd is at its global in-flight limit', { retryAfterSeconds: 1 }), started);
      return;
    }
    if (onDistrustedConnection(req)) return void res.destroy();
    if (req.httpVersionMajor === 2 && headerListSize(req.rawHeaders) > this.maxHeaderSizeBytes) {
      this.deps.clientError('outbound', 'headers_too_large');
      this.answerWithoutService(res, new MeshError('headers_too_large', 'request headers exceed the size limit'), started);
      return;
    }
    const framing = framingProblem(req);
    if (framing !== undefined) {
      this.deps.clientError('outbound', framing.error.code);
      if (framing.close) distrustConnection(req, res);
      this.answerWithoutService(res, framing.error, started, framing.close);
      return;
    }
    const host = requestAuthority(req);
    const target = host instanceof MeshError ? host : parseRequestTarget(req.url ?? '/', host);
    if (target instanceof MeshError) {
      this.deps.clientError('outbound', target.code);
      this.answerWithoutService(res, target, started);
      return;
    }
    const route = this.deps.route(target.service, target.port, req.socket.remoteAddress);
    if (route instanceof Promise) {
      this.active++; // a request waiting for its service to start is in flight: drain waits for it
      route.then(
        (service) => {
          this.active--;
          if (res.destroyed) return;
          this.dispatch(req, res, target, service, started);
        },
        (err: unknown) => {
          this.active--;
          this.deps.log.error({ err, service: target.service }, 'service failed to start');
          this.answerWithoutService(res, new MeshError('internal', 'the service could not be started'), started);
        },
      );
      return;
    }
    this.dispatch(req, res, target, route, started);
  }

  private dispatch(req: IncomingMessage, res: ServerResponse, target: RequestTarget, service: ServiceRuntime | MeshError, started: number): void {
    if (service instanceof MeshError) {
      this.answerWithoutService(res, service, started);
      return;
    }
    const ex = nodeExchange(req, res, target.path, target.authority, started);
    const callerFields = this.deps.callerFields(req.socket.remoteAddress);
    if (callerFields !== undefined) {
      ex.extraFields = callerFields;
      ex.caller = callerIdentityIn(callerFields);
    }
    this.active++;
    // One shared listener, not a closure per request: the response carries what it needs.
    (res as TrackedResponse)[EXCHANGE] = ex;
    (res as TrackedResponse)[LISTENER] = this;
    res.on('close', onResponseClose);
    // Expected failures are answered by the respond layer; this is the net for bugs.
    service.handler(ex).catch((err: unknown) => {
      this.deps.log.error({ err, service: target.service }, 'unhandled data path failure');
      sendError(res, new MeshError('internal', 'internal error'));
    });
  }

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const started = this.deps.clock();
    socket.on('error', () => {}); // a vanished peer is noticed through 'close'
    // HTTP server sockets allow half-open; a WebSocket caller that hangs up is done both ways.
    socket.once('end', () => socket.end());
    if (this.draining) {
      sendRawError(socket, new MeshError('draining', 'meshd is shutting down; reconnect', { retryAfterSeconds: 1 }));
      return;
    }
    // A tunnel holds its place in flight for as long as it is open: the daemon-wide ceiling applies.
    if (this.deps.inFlight() >= this.deps.maxInFlight()) {
      this.deps.clientError('outbound', 'overloaded');
      sendRawError(socket, new MeshError('overloaded', 'meshd is at its global in-flight limit', { retryAfterSeconds: 1 }));
      return;
    }
    const framing = framingProblem(req);
    const target = framing?.error ?? parseRequestTarget(req.url ?? '/', req.headers.host);
    if (target instanceof MeshError) {
      this.deps.clientError('outbound', target.code);
      sendRawError(socket, target);
      return;
    }
    const route = this.deps.route(target.service, target.port, socket.remoteAddress);
    if (route instanceof Promise) {
      socket.pause();
      this.active++;
      route.then(
        (service) => {
          this.active--;
          if (!socket.destroyed) this.upgradeTo(req, socket, head, target, service, started);
        },
        (err: unknown) => {
          this.active--;
          this.deps.log.error({ err, service: target.service }, 'service failed to start');
          sendRawError(socket, new MeshError('internal', 'the service could not be started'));
        },
      );
      return;
    }
    this.upgradeTo(req, socket, head, target, route, started);
  }

  private upgradeTo(req: IncomingMessage, socket: Socket, head: Buffer, target: RequestTarget, service: ServiceRuntime | MeshError, started: number): void {
    if (service instanceof MeshError) {
      this.deps.unknownService.finishedWithoutEndpoint(service.status, (this.deps.clock() - started) / 1000);
      sendRawError(socket, service);
      return;
    }
    if (target.authority !== undefined) {
      req.url = target.path;
      req.headers.host = target.authority;
    }
    const callerFields = this.deps.callerFields(socket.remoteAddress);
    this.tunnels.add(socket);
    this.active++;
    socket.once('close', () => {
      this.tunnels.delete(socket);
      this.active--;
    });
    service.upgrade(req, socket, head, started, callerFields, callerIdentityIn(callerFields));
  }

  private answerWithoutService(res: ServerResponse, err: MeshError, started: number, closeConnection = false): void {
    const recorder = this.deps.unknownService;
    recorder.started();
    sendError(res, err, closeConnection);
    recorder.ended();
    const seconds = (this.deps.clock() - started) / 1000;
    recorder.finishedWithoutEndpoint(err.status, seconds);
    const { witnesses } = this.deps;
    if (witnesses === undefined) return;
    const req = res.req;
    const host = requestAuthority(req);
    logRefusedRequest(witnesses, {
      listener: 'outbound',
      service: typeof host === 'string' ? serviceName(host) : undefined,
      method: req.method,
      path: req.url,
      caller: req.socket.remoteAddress,
      status: err.status,
      error: err.code,
      durationMs: seconds * 1000,
    });
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    const code = clientErrorCode(err);
    if (code === undefined || isDistrusted(socket)) {
      socket.destroy();
      return;
    }
    this.deps.clientError('outbound', code);
    this.deps.log.info({ listener: 'outbound', code, reason: err.code ?? err.message, remote: socket.remoteAddress }, 'malformed request refused');
    sendRawError(socket, new MeshError(code, CLIENT_ERROR_MESSAGES[code] ?? 'malformed request'));
  }
}

/** An HTTP/2 header list's size as SETTINGS_MAX_HEADER_LIST_SIZE counts it: each field's name and value plus 32 bytes (RFC 9113 §6.5.2). */
function headerListSize(raw: readonly string[]): number {
  let size = 0;
  for (const item of raw) size += item.length + 16;
  return size;
}

/**
 * The authority a request names: Host for HTTP/1.1, `:authority` for HTTP/2 (RFC 9113 §8.3.1; a
 * Host field, which HTTP/2 clients should not send, is the fallback). An HTTP/2 request whose two
 * disagree is malformed: routing by one while the app reads the other would let a caller pick
 * its service behind a policy's back.
 */
function requestAuthority(req: IncomingMessage): string | undefined | MeshError {
  if (req.httpVersionMajor !== 2) return req.headers.host;
  const authority = req.headers[':authority'] as string | undefined;
  const host = req.headers.host;
  if (authority !== undefined && host !== undefined && authority !== host) {
    return new MeshError('bad_request', ':authority and Host name different services (RFC 9113 §8.3.1)');
  }
  return authority ?? host;
}

const EXCHANGE = Symbol('meshd.exchange');
const LISTENER = Symbol('meshd.listener');
type TrackedResponse = ServerResponse & { [EXCHANGE]?: Exchange; [LISTENER]?: OutboundHttpListener };

/** The caller's response closed: the request is no longer active, and if it did not finish, the caller left. */
function onResponseClose(this: TrackedResponse): void {
  const listener = this[LISTENER];
  if (listener !== undefined) listener.active--;
  if (!this.writableEnded) this[EXCHANGE]?.cancel(CLIENT_GONE);
}

const CLIENT_ERROR_MESSAGES: Partial<Record<ErrorCode, string>> = {
  headers_too_large: 'request line and headers exceed the size limit',
  request_timeout: 'request headers did not arrive in time',
  bad_request: 'malformed HTTP request',
};

/** undefined: the peer is gone, nothing can be written. */
function clientErrorCode(err: NodeJS.ErrnoException): ErrorCode | undefined {
  switch (err.code) {
    case 'ECONNRESET':
    case 'EPIPE':
      return undefined;
    case 'HPE_HEADER_OVERFLOW':
      return 'headers_too_large';
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_HEADERS_TIMEOUT':
      return 'request_timeout';
    default:
      return 'bad_request';
  }
}
