/**
 * The admin listener (loopback): / (the live dashboard), /metrics, /healthz,
 * /readyz, /debug/state, /debug/graph, and the changes of ./changes.ts.
 * The same server in the `metrics` scope is the scrape listener: GET /metrics
 * and nothing else, for a Prometheus on another host, admitting only the
 * sources of metrics.allowFrom (checked at accept, before a byte is read).
 * It has its own small connection cap so that a flood on the outbound
 * listener can never lock operators out, and a slow client cannot hold that
 * cap (the oldest idle or half-sent connection gives way, and header timers
 * are checked every second, not Node's 30 s). It answers only to Host names
 * that are IP literals, localhost or configured, so that a web page cannot
 * reach it through DNS rebinding.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import { ConnectionSlots } from './connection-slots.ts';
import { bindServer, listenTarget } from '../listeners/bind.ts';
import type { Logger } from '../log.ts';
import type { SourceFilter } from '../listeners/source-filter.ts';
import { dashboardResponse } from './dashboard.ts';
import type { TrafficGraph } from './traffic-graph.ts';
import { changeRefusal, parseAdminFault, readJson, type ChangeAnswer, type ChangeTarget } from './changes.ts';

export interface Readiness {
  ready: boolean;
  checks: Record<string, boolean>;
}

export interface AdminSources {
  metrics(): Promise<{ contentType: string; body: string }>;
  readiness(): Readiness;
  /** The state as JSON, or a promise of it (a supervisor of several workers asks them first). */
  state(): unknown;
  /** Fault injections and canary commands (./changes.ts). */
  readonly changes?: ChangeTarget;
  /** The dependency map (a supervisor merges its workers'). */
  graph?(): TrafficGraph | Promise<TrafficGraph>;
}

/** `admin`: everything above; `metrics`: GET /metrics only. */
export type AdminScope = 'admin' | 'metrics';

export interface AdminServerOptions {
  readonly scope: AdminScope;
  readonly maxConnections: number;
  /** Read per request, so that it follows reloads. */
  readonly allowHosts: () => readonly string[];
  /** Who besides loopback may change things; read per request. */
  readonly changesFrom?: () => SourceFilter | undefined;
  /** A connection from a source outside `allowFrom` was closed unread. */
  readonly sourceRefused?: () => void;
  readonly log: Logger;
}

export class AdminServer {
  readonly server: Server;
  readonly scope: AdminScope;
  /** Sources that may connect; undefined admits all. Set before listening and on reload. */
  allowFrom: SourceFilter | undefined;
  private readonly sources: AdminSources;
  private readonly log: Logger;

  private readonly slots: ConnectionSlots;
  private readonly allowHosts: () => readonly string[];

  private readonly changesFrom: () => SourceFilter | undefined;

  constructor(sources: AdminSources, options: AdminServerOptions) {
    this.scope = options.scope;
    this.changesFrom = options.changesFrom ?? (() => undefined);
    this.sources = sources;
    this.log = options.log;
    this.allowHosts = options.allowHosts;
    this.slots = new ConnectionSlots(options.maxConnections);
    this.server = createServer({ headersTimeout: 5_000, requestTimeout: 10_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 1_000 }, (req, res) => {
      res.once('close', this.slots.requestStarted(req.socket));
      this.handle(req, res).catch((err: unknown) => {
        this.log.error({ err, path: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
        else res.destroy();
      });
    });
    this.server.on('connection', (socket: Socket) => {
      if (this.allowFrom !== undefined && !this.allowFrom.allows(socket.remoteAddress)) {
        options.sourceRefused?.();
        this.log.warn({ listener: this.scope, remote: socket.remoteAddress }, `connection from a source outside ${this.scope}.allowFrom refused`);
        socket.destroy();
        return;
      }
      if (!this.slots.admit(socket)) socket.destroy();
    });
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  /** Binds host:port, or adopts the inherited listening socket `fd` (socket activation). */
  listen(host: string, port: number, fd?: number): Promise<AddressInfo> {
    return bindServer(this.server, listenTarget(host, port, fd), (err) => this.log.error({ listener: this.scope, err }, 'listener error; still serving'));
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!hostAllowed(req.headers.host, this.allowHosts())) {
      this.log.warn(
        { listener: this.scope, host: req.headers.host, remote: req.socket.remoteAddress },
        'admin request for a Host name it does not serve refused',
      );
      send(res, 403, 'text/plain', 'forbidden: this Host is not served here; add it to admin.allowHosts\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (this.scope === 'metrics') {
      await this.scrape(req, res, path);
      return;
    }
    const changes = this.sources.changes;
    if (changes !== undefined && (path === '/faults' || path.startsWith('/faults/') || path.startsWith('/canary/'))) {
      await this.change(req, res, path, changes);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, 'text/plain', 'method not allowed\n');
      return;
    }
    switch (path) {
      case '/': {
        const page = dashboardResponse();
        res.writeHead(200, { ...page.headers, 'content-length': Buffer.byteLength(page.body) });
        res.end(req.method === 'HEAD' ? undefined : page.body);
        return;
      }
      case '/metrics':
        await this.serveMetrics(res);
        return;
      case '/healthz':
        send(res, 200, 'text/plain', 'ok\n');
        return;
      case '/readyz': {
        const readiness = this.sources.readiness();
        send(res, readiness.ready ? 200 : 503, 'application/json', `${JSON.stringify(readiness)}\n`);
        return;
      }
      case '/debug/graph': {
        if (this.sources.graph === undefined) break;
        const graph = await this.sources.graph();
        if (new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('format') === 'dot') send(res, 200, 'text/vnd.graphviz; charset=utf-8', graph.dot());
        else send(res, 200, 'application/json', `${JSON.stringify(graph.graph(), null, 2)}\n`);
        return;
      }
      case '/debug/state':
        send(res, 200, 'application/json', `${JSON.stringify(await this.sources.state(), null, 2)}\n`);
        return;
    }
    send(res, 404, 'text/plain', 'not found: try /metrics, /healthz, /readyz, /debug/state, /debug/graph, /faults\n');
  }

  /** The scrape listener: GET /metrics, and nothing of the admin API (no state, no dashboard, no changes). */
  private async scrape(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (path !== '/metrics') {
      send(res, 404, 'text/plain', 'not found: this listener serves /metrics only\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, 'text/plain', 'method not allowed\n');
      return;
    }
    await this.serveMetrics(res);
  }

  private async serveMetrics(res: ServerResponse): Promise<void> {
    const { contentType, body } = await this.sources.metrics();
    send(res, 200, contentType, body);
  }

  /** GET /faults; POST /faults; DELETE /faults/SERVICE/NAME; POST /canary/SERVICE/COMMAND. */
  private async change(req: IncomingMessage, res: ServerResponse, path: string, changes: ChangeTarget): Promise<void> {
    const answer = await this.decideChange(req, res, path, changes);
    send(res, answer.status, 'application/json', `${JSON.stringify(answer.body, null, 2)}\n`);
  }

  private async decideChange(req: IncomingMessage, res: ServerResponse, path: string, changes: ChangeTarget): Promise<ChangeAnswer> {
    let parts: string[];
    try {
      parts = path
        .split('/')
        .slice(1)
        .map((p) => decodeURIComponent(p));
    } catch {
      return { status: 400, body: { error: 'bad_request', message: 'malformed percent-encoding in the path' } };
    }
    const method = req.method ?? 'GET';
    if (path === '/faults' && (method === 'GET' || method === 'HEAD')) return changes.listFaults();
    const allowed = path === '/faults' ? 'GET, HEAD, POST' : parts[0] === 'faults' ? 'DELETE' : 'POST';
    if (!allowed.split(', ').includes(method)) {
      res.setHeader('allow', allowed);
      return { status: 405, body: { error: 'method_not_allowed', message: `use ${allowed}` } };
    }
    const refusal = changeRefusal(req, this.changesFrom());
    if (refusal !== undefined) {
      this.log.warn({ listener: 'admin', path, remote: req.socket.remoteAddress, reason: refusal.body }, 'admin change refused');
      return refusal;
    }
    if (path === '/faults') {
      const body = await readJson(req);
      if ('error' in body) return { status: 400, body: { error: 'bad_request', message: body.error } };
      const parsed = parseAdminFault(body.value);
      if ('problems' in parsed) return { status: 400, body: { error: 'invalid_fault', problems: parsed.problems } };
      return changes.addFault(parsed.service, parsed.fault);
    }
    if (parts[0] === 'faults' && parts.length === 3) return changes.removeFault(parts[1] ?? '', parts[2] ?? '');
    if (parts[0] === 'canary' && parts.length === 3) return changes.canary(parts[1] ?? '', parts[2] ?? '');
    return { status: 404, body: { error: 'not_found', message: 'use /faults, /faults/SERVICE/NAME or /canary/SERVICE/COMMAND' } };
  }
}

/** An IP literal, localhost, a configured name, or no Host at all (HTTP/1.0): never a name a web page chose. */
export function hostAllowed(host: string | undefined, allowHosts: readonly string[]): boolean {
  if (host === undefined || host === '') return true;
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '')).toLowerCase();
  return isIP(name) !== 0 || name === 'localhost' || allowHosts.includes(name);
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
