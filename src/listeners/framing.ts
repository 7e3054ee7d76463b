/**
 * HTTP/1.x framing rules node:http leaves to the application (RFC 9112):
 * a request with more than one Host field is refused (§3.2), and an HTTP/1.0
 * request that carries Transfer-Encoding has faulty framing (§6.1): it is
 * refused and its connection closed, since where its body ends cannot be
 * known. Both are classic request-smuggling vectors between proxies that
 * disagree on them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { MeshError } from '../errors.ts';

export interface FramingProblem {
  readonly error: MeshError;
  /** The connection cannot be trusted for another request. */
  readonly close: boolean;
}

/** What is wrong with the framing of `req`, or undefined. HTTP/2 frames its messages itself. */
export function framingProblem(req: IncomingMessage): FramingProblem | undefined {
  // A fragment never travels in a request (RFC 9110 §4.2.4): judged by rules as part of the path,
  // it would reach an app that parses it away as the path the rules refused ("/admin#x").
  if (req.url?.includes('#') === true) return { error: new MeshError('bad_request', 'a request target cannot carry a fragment (#)'), close: false };
  if (req.httpVersionMajor !== 1) return undefined;
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++;
  }
  if (hosts > 1) return { error: new MeshError('bad_request', 'more than one Host field (RFC 9112 §3.2)'), close: true };
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) {
    return { error: new MeshError('bad_request', 'an HTTP/1.0 request cannot use Transfer-Encoding (RFC 9112 §6.1)'), close: true };
  }
  return undefined;
}

const UNTRUSTED = Symbol('meshd.untrustedFraming');
type MarkedSocket = Socket & { [UNTRUSTED]?: true };

/**
 * After a framing error the bytes that follow on the connection cannot be trusted as requests:
 * node:http may already have parsed pipelined ones. Marks the connection so that they are never
 * served, and closes it once the error answer is written.
 */
export function distrustConnection(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket as MarkedSocket;
  socket[UNTRUSTED] = true;
  res.once('finish', () => socket.destroySoon());
}

/** Whether `req` arrived on a connection that had a framing error. */
export function onDistrustedConnection(req: IncomingMessage): boolean {
  return isDistrusted(req.socket);
}

/** Whether the connection had a framing error: a later parse error on it gets no answer of its own. */
export function isDistrusted(socket: Socket | null): boolean {
  return socket !== null && (socket as MarkedSocket)[UNTRUSTED] === true;
}
