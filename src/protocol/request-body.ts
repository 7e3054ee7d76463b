/** Whether a request carries a body, for both HTTP versions. */
import type { IncomingMessage } from 'node:http';

/** Whether the caller sends a body: HTTP/1.1 says so in its framing headers, HTTP/2 by not ending the stream. */
export function requestHasBody(req: IncomingMessage): boolean {
  if (req.httpVersionMajor === 2) return !(req as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders;
  const headers = req.headers;
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  return length !== undefined && length !== '0';
}
