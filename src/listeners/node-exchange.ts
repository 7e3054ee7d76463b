/**
 * node:http and node:http2 (compatibility API) as the stack sees HTTP: a
 * request head, the body stream and a response sink (stack/exchange.ts). The
 * listeners make an Exchange here; no layer touches IncomingMessage or
 * ServerResponse. HTTP/2 callers get response fields shaped for HTTP/2.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MeshError } from '../errors.ts';
import { http2ResponseHeaders, type HeaderObject } from '../proxy/headers.ts';
import { grpcStatusOf } from '../protocol/grpc.ts';
import { requestHasBody } from '../protocol/request-body.ts';
import { Exchange, type RequestHead, type ResponseSink } from '../stack/exchange.ts';
import { respondError } from '../stack/respond.ts';

class NodeRequestHead implements RequestHead {
  private readonly req: IncomingMessage;
  /** Held apart: node:http lets go of `req.socket` once a large request's connection is handed back. */
  private readonly socket: IncomingMessage['socket'];
  readonly path: string;
  readonly authority: string | undefined;
  readonly hasBody: boolean;

  constructor(req: IncomingMessage, path: string, authority: string | undefined) {
    this.req = req;
    this.socket = req.socket;
    this.path = path;
    // An HTTP/2 caller names the service in :authority, which has no HTTP/1.1 Host to copy.
    this.authority =
      authority ?? (req.httpVersionMajor === 2 && req.headers.host === undefined ? (req.headers[':authority'] as string | undefined) : undefined);
    this.hasBody = requestHasBody(req);
  }

  field(name: string): string | undefined {
    const value = this.req.headers[name];
    return Array.isArray(value) ? value.join(', ') : value;
  }

  get method(): string {
    return this.req.method ?? 'GET';
  }

  get fields(): readonly string[] {
    return this.req.rawHeaders;
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
}

class NodeResponseSink implements ResponseSink {
  private readonly res: ServerResponse;
  private readonly http2: boolean;
  bytesSent = 0;
  grpcStatus: number | undefined = undefined;

  constructor(res: ServerResponse, http2: boolean) {
    this.res = res;
    this.http2 = http2;
  }

  get started(): boolean {
    return this.res.headersSent;
  }

  get ended(): boolean {
    return this.res.writableEnded;
  }

  get closed(): boolean {
    return this.res.destroyed;
  }

  get status(): number {
    return this.res.statusCode;
  }

  setField(name: string, value: string): void {
    this.res.setHeader(name, value);
  }

  start(status: number, fields: HeaderObject, reason?: string): void {
    if (this.http2) {
      // HTTP/2 has no reason phrase, and refuses fields HTTP/1.1 tolerates (repeated single-value ones).
      try {
        this.res.writeHead(status, http2ResponseHeaders(fields));
      } catch {
        this.res.writeHead(status, http2ResponseHeaders(fields, true));
      }
    } else if (reason === undefined || reason === '') this.res.writeHead(status, fields);
    else this.res.writeHead(status, reason, fields);
  }

  write(chunk: Buffer): boolean {
    this.bytesSent += chunk.length;
    return this.res.write(chunk);
  }

  onceDrain(resume: () => void): void {
    this.res.once('drain', resume);
  }

  trailers(fields: Readonly<Record<string, string>>): void {
    this.grpcStatus = grpcStatusOf(fields) ?? this.grpcStatus;
    this.res.addTrailers(fields);
  }

  end(body?: string): void {
    if (body !== undefined) this.bytesSent += Buffer.byteLength(body);
    this.res.end(body);
  }

  reset(): void {
    this.res.destroy();
  }
}

/** An Exchange for a node:http or node:http2 request. */
export function nodeExchange(req: IncomingMessage, res: ServerResponse, path: string, authority: string | undefined, startedAt: number): Exchange {
  const head = new NodeRequestHead(req, path, authority);
  return new Exchange(head, head.hasBody ? req : undefined, new NodeResponseSink(res, req.httpVersionMajor === 2), startedAt);
}

/** meshd's error answer on a node response, for listeners answering before any exchange exists. */
export function sendError(res: ServerResponse, err: MeshError, closeConnection = false): void {
  const req = res.req as IncomingMessage | undefined;
  const contentType = req?.headers['content-type'];
  respondError(
    new NodeResponseSink(res, req?.httpVersionMajor === 2),
    { method: req?.method ?? 'GET', contentType: typeof contentType === 'string' ? contentType : undefined },
    err,
    closeConnection,
  );
}
