/**
 * A pod's app for the multi-node tests, run inside the pod's network
 * namespace: HTTP/1.1 on one port (answers with its pod name and the
 * request's headers; echoes WebSocket messages), and gRPC (h2c, the shared
 * test service) on another, and raw TCP on a third (answers each chunk with
 * "POD:" and the chunk). POST /_control/delay?ms=N makes every later
 * answer N ms slow (a slow host, made in the backend itself). With
 * ADMIN_PORT, the same HTTP app on a second port (a multi-port Service);
 * every answer names the port it came in on.
 * Usage: pod-server.ts POD_NAME ADDRESS HTTP_PORT GRPC_PORT TCP_PORT [ADMIN_PORT]
 */
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { startGrpcServer } from './grpc.ts';
import { serveWebSocketEcho } from './websocket.ts';

const [pod = 'pod', address = '127.0.0.1', httpPort = '8080', grpcPort = '9090', tcpPort = '7000', adminPort] = process.argv.slice(2);
let delayMs = 0;

const server = createServer((req, res) => {
  if (req.url?.startsWith('/_control/delay') === true) {
    delayMs = Number(new URL(req.url, 'http://x').searchParams.get('ms') ?? '0');
    res.end('ok');
    return;
  }
  req.resume();
  req.once('end', () =>
    setTimeout(() => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ pod, port: req.socket.localPort, path: req.url, headers: req.headers }));
    }, delayMs),
  );
});
serveWebSocketEcho(server);
server.listen(Number(httpPort), address);
if (adminPort !== undefined) {
  const admin = createServer((req, res) => server.emit('request', req, res));
  admin.listen(Number(adminPort), address);
}
await startGrpcServer(
  (request, metadata) => Promise.resolve({ text: `${pod}:${request.text}:${String(metadata.get('x-meshd-caller-identity')[0] ?? '')}` }),
  `${address}:${grpcPort}`,
);
createTcpServer((socket) => {
  socket.on('data', (chunk: Buffer) => socket.write(`${pod}:${chunk.toString()}`));
  socket.on('end', () => socket.end());
  socket.on('error', () => {});
}).listen(Number(tcpPort), address);
process.stdout.write('ready\n');
