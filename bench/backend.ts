/**
 * The benchmark's upstream: a minimal keep-alive HTTP/1.1 server. `/16k`
 * answers a 16 KiB body, every other path answers "hello" (5 bytes). Both
 * bodies are prebuilt so the backend spends as little CPU as possible.
 *
 * Usage: node bench/backend.ts PORT [HOST]   (listens on 127.0.0.1 unless HOST says otherwise:
 * a pod's address in the mesh scenario's network namespaces)
 */
import { createServer } from 'node:http';

const SMALL = Buffer.from('hello');
const LARGE = Buffer.alloc(16 * 1024, 'x');

const port = Number(process.argv[2] ?? '0');
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`backend: bad port ${process.argv[2] ?? ''}\n`);
  process.exit(2);
}

const server = createServer({ keepAlive: true, noDelay: true, keepAliveTimeout: 120_000, requestTimeout: 0 }, (req, res) => {
  const body = req.url === '/16k' ? LARGE : SMALL;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;

server.listen({ host: process.argv[3] ?? '127.0.0.1', port, backlog: 4096 }, () => {
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: bound })}\n`);
});

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
