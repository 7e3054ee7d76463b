/**
 * Writes meshd's own error responses: JSON body `{error, message}`, header
 * `x-meshd-error`, status from the one code→status table in errors.ts.
 */
import type { ServerResponse } from 'node:http';
import { ERROR_HEADER, errorBody, type MeshError } from '../errors.ts';

/** Sends `err` to the caller, or resets the stream when a response already started. */
export function sendError(res: ServerResponse, err: MeshError, closeConnection = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (res.destroyed) return;
  const body = errorBody(err);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    [ERROR_HEADER]: err.code,
  };
  if (err.retryAfterSeconds !== undefined) headers['retry-after'] = err.retryAfterSeconds;
  if (closeConnection) headers['connection'] = 'close';
  res.writeHead(err.status, headers);
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}
