/**
 * The HTTP/2 benchmark's h2c upstream: a minimal node:http2 cleartext server
 * (HTTP/2 with prior knowledge, no TLS, no HTTP/1.1 fallback). `/16k` answers
 * a 16 KiB body, every other path answers "hello" (5 bytes), like backend.ts.
 * It uses the core stream API (no compatibility layer) so it spends as little
 * CPU per request as it can.
 *
 * Usage: node bench/h2backend.ts PORT   (listens on 127.0.0.1 only)
 */
import { constants, createServer } from 'node:http2';

const SMALL = Buffer.from('hello');
const LARGE = Buffer.alloc(16 * 1024, 'x');
const { HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_CONTENT_LENGTH } = constants;

const port = Number(process.argv[2] ?? '0');
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`h2backend: bad port ${process.argv[2] ?? ''}\n`);
  process.exit(2);
}

const server = createServer({
  // Load generators and proxies open many streams per session; do not let Node's defaults refuse them.
  peerMaxConcurrentStreams: 1000,
  maxSessionMemory: 64,
  settings: { maxConcurrentStreams: 1000, enablePush: false },
});
server.on('stream', (stream, headers) => {
  const body = headers[HTTP2_HEADER_PATH] === '/16k' ? LARGE : SMALL;
  stream.on('error', () => {}); // a reset by the peer needs no report
  stream.respond({ [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'text/plain', [HTTP2_HEADER_CONTENT_LENGTH]: body.length });
  stream.end(body);
});
server.on('sessionError', () => {});
server.setTimeout(0);

server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: bound })}\n`);
});

const stop = (): void => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
