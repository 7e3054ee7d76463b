/**
 * The skewed scenario's upstream: a keep-alive HTTP/1.1 server that answers
 * every request after a fixed delay (setTimeout), and counts what it served.
 *
 * - any path: 200 "hello" (5 bytes) after DELAY_MS, counted; an
 *   `x-bench-start` request header is echoed in the response (the load
 *   script times each request with it, see skew-load.lua);
 * - `GET /__count`: `{"count":N}` at once, not counted (the harness asks the
 *   backend directly, never through meshd); `GET /__count?reset=1` also
 *   resets the counter to 0.
 *
 * Usage: node bench/skew-backend.ts PORT DELAY_MS   (listens on 127.0.0.1 only)
 */
import { createServer } from 'node:http';

const BODY = Buffer.from('hello');

const port = Number(process.argv[2] ?? '0');
const delayMs = Number(process.argv[3] ?? '0');
if (!Number.isInteger(port) || port < 0 || port > 65535 || !Number.isFinite(delayMs) || delayMs < 0) {
  process.stderr.write(`skew-backend: bad arguments "${process.argv.slice(2).join(' ')}"\nusage: node bench/skew-backend.ts PORT DELAY_MS\n`);
  process.exit(2);
}

let count = 0;

const server = createServer({ keepAlive: true, noDelay: true, keepAliveTimeout: 120_000, requestTimeout: 0 }, (req, res) => {
  if (req.url?.startsWith('/__count') === true) {
    const body = JSON.stringify({ count, delayMs });
    if (req.url.includes('reset=1')) count = 0;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  count++;
  const stamp = req.headers['x-bench-start'];
  setTimeout(() => {
    if (res.destroyed) return;
    const headers: Record<string, string | number> = { 'content-type': 'text/plain', 'content-length': BODY.length };
    if (typeof stamp === 'string') headers['x-bench-start'] = stamp;
    res.writeHead(200, headers);
    res.end(BODY);
  }, delayMs);
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;

server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: bound, delayMs })}\n`);
});

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
