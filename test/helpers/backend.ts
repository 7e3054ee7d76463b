/**
 * Real HTTP backends on 127.0.0.1 ephemeral ports, with the behaviours the
 * tests need: healthy, slow, failing, resetting, or speaking garbage.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';

export interface Backend {
  port: number;
  address: string;
  hits: number;
  server: Server | TcpServer;
  close(): Promise<void>;
}

export type BackendHandler = (req: IncomingMessage, res: ServerResponse, backend: Backend) => void;

/** Echoes method, url, headers and the port that answered, as JSON. */
export const echo: BackendHandler = (req, res, backend) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.stringify({ port: backend.port, method: req.method, url: req.url, headers: req.headers, bodyBytes: Buffer.concat(chunks).length });
    res.writeHead(200, { 'content-type': 'application/json', 'x-backend-port': String(backend.port) });
    res.end(body);
  });
};

export async function startBackend(handler: BackendHandler = echo): Promise<Backend> {
  const backend: Backend = { port: 0, address: '', hits: 0, server: undefined as unknown as Server, close: async () => {} };
  const server = createServer((req, res) => {
    backend.hits++;
    handler(req, res, backend);
  });
  server.keepAliveTimeout = 30_000;
  backend.server = server;
  // Upgraded sockets leave the server's own tracking; close() must still end them.
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  backend.port = (server.address() as AddressInfo).port;
  backend.address = `127.0.0.1:${backend.port}`;
  backend.close = () =>
    new Promise((r) => {
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return backend;
}

/** A TCP server whose every connection gets `onConnection` (garbage, resets…). */
export async function startRawBackend(onConnection: (socket: Socket) => void): Promise<Backend> {
  const server = createTcpServer((socket) => {
    backend.hits++;
    socket.on('error', () => {});
    onConnection(socket);
  });
  const backend: Backend = { port: 0, address: '', hits: 0, server, close: async () => {} };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  backend.port = (server.address() as AddressInfo).port;
  backend.address = `127.0.0.1:${backend.port}`;
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  backend.close = () =>
    new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return backend;
}

/** A port with nothing listening (bound then released). */
export async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
