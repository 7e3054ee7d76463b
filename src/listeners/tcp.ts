/**
 * A TCP port for one service (databases, brokers): sockets only. Each
 * accepted connection from an allowed source is handed to the service,
 * which balances it.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Logger } from '../log.ts';
import { bindServer, listenTarget } from './bind.ts';
import type { SourceFilter } from './source-filter.ts';

export interface TcpListenerEvents {
  connection(socket: Socket): void;
  /** A caller outside the allowed source ranges was refused. */
  refused(remote: string | undefined): void;
}

export class TcpListener {
  readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly service: string;
  private readonly log: Logger;
  /** Callers allowed by source address; undefined allows all (loopback listeners). Follows reloads. */
  allowFrom: SourceFilter | undefined;

  constructor(service: string, maxConnections: number, allowFrom: SourceFilter | undefined, events: TcpListenerEvents, log: Logger) {
    this.service = service;
    this.log = log;
    this.allowFrom = allowFrom;
    // Half-open allowed: a client that shuts down its sending side still gets the reply.
    this.server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
      socket.on('error', () => {}); // reported through the splice
      if (this.allowFrom !== undefined && !this.allowFrom.allows(socket.remoteAddress)) {
        events.refused(socket.remoteAddress);
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      events.connection(socket);
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
