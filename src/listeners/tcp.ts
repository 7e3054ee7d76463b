/**
 * A loopback TCP port for one service (databases, brokers): sockets only.
 * Each accepted connection is handed to the service, which balances it.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Logger } from '../log.ts';
import { bindServer, listenTarget } from './bind.ts';

export class TcpListener {
  readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly service: string;
  private readonly log: Logger;

  constructor(service: string, maxConnections: number, onConnection: (socket: Socket) => void, log: Logger) {
    this.service = service;
    this.log = log;
    // Half-open allowed: a client that shuts down its sending side still gets the reply.
    this.server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      socket.on('error', () => {}); // reported through the splice
      onConnection(socket);
    });
    this.server.maxConnections = maxConnections;
  }

  get active(): number {
    return this.sockets.size;
  }

  listen(host: string, port: number, reusePort: boolean): Promise<AddressInfo> {
    return bindServer(this.server, listenTarget(host, port, undefined, { reusePort }), (err) =>
      this.log.error({ listener: 'tcp', service: this.service, err }, 'listener error; still serving'),
    );
  }

  /** Stops accepting; open connections continue until `destroyAll`. */
  stopAccepting(): void {
    this.server.close();
  }

  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
  }
}
