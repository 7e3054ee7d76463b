/**
 * Four minimal HTTP/1.1 forwarding engines for the "engines" benchmark
 * scenario (BENCH_SCENARIO=engines, see bench/README.md). Each one is a
 * forwarder of every request to one backend (all but raw-h1 behind a node:http
 * server), with the same
 * server options, the same hop-by-hop header handling (where the engine lets
 * us choose), and the same behaviour on errors (502 before the status line,
 * reset after) and on client aborts (the upstream exchange is cancelled):
 *
 * - `http-proxy-3`: `proxy.web(req, res, { target }, onError)` on a keep-alive
 *   `http.Agent({ keepAlive: true, maxSockets: 256 })` (http-proxy-3 does its
 *   own header copying);
 * - `node-pipe`: `http.request` on the same kind of agent, request piped up,
 *   status and headers copied, response piped down;
 * - `undici-pool`: one undici `Pool` (`connections: 256, pipelining: 1`,
 *   undici's header/body timers off as in meshd), `pool.dispatch` with a handler
 *   that writes the response with backpressure (pause on a full socket, resume
 *   on 'drain') — the shape of meshd's src/proxy/http-forwarder.ts without the
 *   rest of meshd's stack;
 * - `raw-h1`: no HTTP library at all — net sockets on both sides, a pool of
 *   upstream connections, and only the parsing a forwarder cannot skip (the
 *   end of the request head, the end of the response by Content-Length);
 *   bytes are relayed as they arrive, with no header rewriting. Not a proxy
 *   anyone should run (no chunked bodies, no pipelining, no hop-by-hop
 *   handling): it measures what Node itself costs per forwarded request, the
 *   floor under any design built on node:http and undici.
 *
 * This file is deliberately standalone (it imports nothing from the harness),
 * and each engine loads only its own library (dynamic import), so an engine's
 * RSS is the engine's, not the harness's or another engine's.
 *
 * Usage: node bench/engines.ts <http-proxy-3|node-pipe|undici-pool|raw-h1> LISTEN_PORT BACKEND_PORT
 * (listens on 127.0.0.1 only; the backend is 127.0.0.1:BACKEND_PORT)
 */
import { Agent, createServer, request, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import type { Dispatcher } from 'undici';

const ENGINES = ['http-proxy-3', 'node-pipe', 'undici-pool', 'raw-h1'] as const;
type Engine = (typeof ENGINES)[number];

const usage = (why: string): never => {
  process.stderr.write(`engines: ${why}\nusage: node bench/engines.ts <${ENGINES.join('|')}> LISTEN_PORT BACKEND_PORT\n`);
  process.exit(2);
};

const engine = process.argv[2] as Engine;
if (!(ENGINES as readonly string[]).includes(engine)) usage(`unknown engine "${process.argv[2] ?? ''}"`);
const port = Number(process.argv[3]);
const backendPort = Number(process.argv[4]);
for (const p of [port, backendPort]) if (!Number.isInteger(p) || p < 0 || p > 65535) usage(`bad port in "${process.argv.slice(3).join(' ')}"`);
const BACKEND_HOST = '127.0.0.1';
const TARGET = `http://${BACKEND_HOST}:${backendPort}`;
const MAX_SOCKETS = 256;

/** Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded by node-pipe and undici-pool. */
const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

/** The end-to-end headers of a request or response (keys are already lower-case). */
function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && length !== '0';
}

/** 502 while no status line has gone out; otherwise the only honest signal left is a reset. */
function fail(res: ServerResponse, err: Error): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = `bad gateway: ${err.message}\n`;
  res.writeHead(502, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function httpProxy3(): Promise<Handler> {
  const { createProxyServer } = await import('http-proxy-3');
  const agent = new Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  const proxy = createProxyServer({ agent });
  const onError = (err: Error, _req: IncomingMessage, res: ServerResponse | Socket): void => {
    if ('writeHead' in res) fail(res, err);
    else res.destroy();
  };
  return (req, res) => proxy.web(req, res, { target: TARGET }, onError);
}

// A Promise only for the same shape as the others (node:http is already loaded).
function nodePipe(): Promise<Handler> {
  const agent = new Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  const handler: Handler = (req, res) => {
    const upstream = request({ host: BACKEND_HOST, port: backendPort, method: req.method, path: req.url, headers: endToEnd(req.headers), agent }, (upRes) => {
      const out = endToEnd(upRes.headers);
      const message = upRes.statusMessage;
      if (message === undefined || message === '') res.writeHead(upRes.statusCode ?? 502, out);
      else res.writeHead(upRes.statusCode ?? 502, message, out);
      upRes.on('error', (err) => fail(res, err));
      upRes.pipe(res);
    });
    upstream.on('error', (err) => fail(res, err));
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    if (hasBody(req)) req.pipe(upstream);
    else upstream.end();
  };
  return Promise.resolve(handler);
}

class PoolHandler implements Dispatcher.DispatchHandler {
  private readonly res: ServerResponse;
  private controller: Dispatcher.DispatchController | undefined;
  private done = false;

  constructor(res: ServerResponse) {
    this.res = res;
    res.on('close', () => {
      if (!this.done && !res.writableFinished) this.controller?.abort(new Error('client closed the connection'));
    });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200) return; // 1xx interim responses are not relayed
    const out = endToEnd(headers);
    if (statusMessage === undefined || statusMessage === '') this.res.writeHead(statusCode, out);
    else this.res.writeHead(statusCode, statusMessage, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.done = true;
    this.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.done) return;
    this.done = true;
    fail(this.res, err);
  }
}

async function undiciPool(): Promise<Handler> {
  const { Pool } = await import('undici');
  const pool = new Pool(TARGET, {
    connections: MAX_SOCKETS,
    pipelining: 1,
    // Like meshd (and like the http.Agent engines, which have none): no per-request undici timers.
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  return (req, res) => {
    const handler = new PoolHandler(res);
    try {
      pool.dispatch(
        {
          path: req.url ?? '/',
          method: req.method ?? 'GET',
          headers: endToEnd(req.headers) as Record<string, string | string[]>,
          body: hasBody(req) ? req : null,
        },
        handler,
      );
    } catch (err) {
      handler.onResponseError(undefined, err as Error);
    }
  };
}

const HEAD_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;
const OWNER = Symbol('raw-h1.owner');
type PooledSocket = Socket & { [OWNER]?: RawSession | undefined };

/** One client connection of the raw-h1 engine: one request at a time (wrk does not pipeline). */
class RawSession {
  private readonly client: Socket;
  private readonly idle: PooledSocket[];
  private head: Buffer | undefined;
  private upstream: PooledSocket | undefined;
  /** Response body bytes still to relay; -1 while the response head is being read. */
  private remaining = -1;
  private responseHead: Buffer | undefined;

  constructor(client: Socket, idle: PooledSocket[]) {
    this.client = client;
    this.idle = idle;
    client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    client.on('error', () => {});
    client.on('close', () => this.upstream?.destroy());
  }

  private fromClient(chunk: Buffer): void {
    const head = this.head === undefined ? chunk : Buffer.concat([this.head, chunk]);
    if (head.indexOf(HEAD_END) < 0) {
      this.head = head;
      return;
    }
    this.head = undefined;
    this.remaining = -1;
    this.upstream = this.idle.pop() ?? this.connectUpstream();
    this.upstream[OWNER] = this;
    this.upstream.write(head);
  }

  private connectUpstream(): PooledSocket {
    const socket: PooledSocket = connect({ host: BACKEND_HOST, port: backendPort, noDelay: true });
    socket.on('data', (chunk: Buffer) => socket[OWNER]?.fromUpstream(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      const i = this.idle.indexOf(socket);
      if (i >= 0) this.idle.splice(i, 1);
      socket[OWNER]?.client.destroy();
    });
    return socket;
  }

  fromUpstream(chunk: Buffer): void {
    if (this.remaining < 0) {
      const head = this.responseHead === undefined ? chunk : Buffer.concat([this.responseHead, chunk]);
      const end = head.indexOf(HEAD_END);
      if (end < 0) {
        this.responseHead = head;
        return;
      }
      this.responseHead = undefined;
      const length = CONTENT_LENGTH.exec(head.toString('latin1', 0, end + 2));
      this.remaining = Number(length?.[1] ?? 0) - (head.length - end - 4);
      this.relay(head);
    } else {
      this.remaining -= chunk.length;
      this.relay(chunk);
    }
    if (this.remaining === 0 && this.upstream !== undefined) {
      this.upstream[OWNER] = undefined;
      this.idle.push(this.upstream);
      this.upstream = undefined;
    }
  }

  private relay(bytes: Buffer): void {
    const upstream = this.upstream;
    if (!this.client.write(bytes) && upstream !== undefined) {
      upstream.pause();
      this.client.once('drain', () => upstream.resume());
    }
  }
}

function listening(bound: unknown): void {
  const p = typeof bound === 'object' && bound !== null ? (bound as { port: number }).port : port;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', engine, port: p, backend: TARGET })}\n`);
}

if (engine === 'raw-h1') {
  const idle: PooledSocket[] = [];
  const raw = createNetServer({ noDelay: true }, (client) => new RawSession(client, idle));
  raw.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => listening(raw.address()));
  const stopRaw = (): void => {
    raw.close();
    process.exit(0);
  };
  process.on('SIGTERM', stopRaw);
  process.on('SIGINT', stopRaw);
}

const handlers: Record<Exclude<Engine, 'raw-h1'>, () => Promise<Handler>> = {
  'http-proxy-3': httpProxy3,
  'node-pipe': nodePipe,
  'undici-pool': undiciPool,
};
const handle = engine === 'raw-h1' ? undefined : await handlers[engine]();

// The same server options as bench/backend.ts (and, where it matters here, meshd's outbound listener).
const server = createServer({ keepAlive: true, noDelay: true, keepAliveTimeout: 120_000, requestTimeout: 0 }, handle);
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;

if (engine !== 'raw-h1') {
  server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => listening(server.address()));
  const stop = (): void => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
