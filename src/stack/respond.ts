/**
 * Writes meshd's own error responses: JSON body `{error, message}`, header
 * `x-meshd-error`, status from the one code→status table in errors.ts.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { ERROR_HEADER, errorBody, type ErrorCode, type MeshError } from '../errors.ts';
import type { ResponseSink } from './exchange.ts';

/** gRPC status for each meshd error, so gRPC callers get a status their library understands. */
const GRPC_STATUS: Record<ErrorCode, number> = {
  bad_request: 13, // INTERNAL: the request was malformed at the HTTP level
  forbidden: 7, // PERMISSION_DENIED
  unknown_service: 12, // UNIMPLEMENTED
  no_route: 12,
  no_backend: 13,
  method_not_allowed: 12,
  misdirected: 14, // UNAVAILABLE: another endpoint may take it
  request_timeout: 4, // DEADLINE_EXCEEDED
  headers_too_large: 8, // RESOURCE_EXHAUSTED
  rate_limited: 8,
  internal: 13,
  connect_failed: 14, // UNAVAILABLE
  upstream_reset: 14,
  upstream_protocol_error: 13,
  no_endpoints: 14,
  overloaded: 14,
  draining: 14,
  upstream_timeout: 4,
  client_closed: 1,
};

/** What an error answer depends on in the request: HEAD gets no body, a gRPC caller gets a status in trailers. */
export interface ErrorAudience {
  readonly method: string;
  readonly contentType: string | undefined;
}

/** Sends `err` to the caller, or resets the stream when a response already started. */
export function respondError(sink: ResponseSink, audience: ErrorAudience, err: MeshError, closeConnection = false): void {
  if (sink.started) {
    sink.reset();
    return;
  }
  if (sink.closed) return;
  if (audience.contentType !== undefined && audience.contentType.startsWith('application/grpc')) {
    // gRPC carries the status in trailers (HTTP status is always 200).
    sink.start(200, { 'content-type': 'application/grpc', [ERROR_HEADER]: err.code });
    sink.trailers({ 'grpc-status': String(GRPC_STATUS[err.code]), 'grpc-message': encodeURIComponent(err.message) });
    sink.end();
    return;
  }
  const body = errorBody(err);
  const fields: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    [ERROR_HEADER]: err.code,
  };
  if (err.retryAfterSeconds !== undefined) fields['retry-after'] = String(err.retryAfterSeconds);
  if (closeConnection) fields['connection'] = 'close';
  sink.start(err.status, fields);
  sink.end(audience.method === 'HEAD' ? undefined : body);
}

/** Answers a WebSocket handshake whose route redirects (RequestRedirect), and closes the socket. */
export function sendRawRedirect(socket: Socket, status: number, location: string): void {
  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Redirect'}\r\nlocation: ${location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
  socket.setTimeout(5_000, () => socket.destroy());
}

/** Answers on a raw socket (malformed input, upgrades: no ServerResponse exists) and closes it. */
export function sendRawError(socket: Socket, err: MeshError): void {
  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  const body = errorBody(err);
  const retryAfter = err.retryAfterSeconds === undefined ? '' : `retry-after: ${err.retryAfterSeconds}\r\n`;
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${ERROR_HEADER}: ${err.code}\r\n${retryAfter}connection: close\r\n\r\n${body}`,
  );
  // A peer that never reads must not hold the socket open.
  socket.setTimeout(5_000, () => socket.destroy());
}
