/**
 * The TCP ports of services (`services.NAME.tcp`): binds, moves and removes
 * one listener per service to match the config, applies each one's source
 * ranges (followed on reload), and hands every accepted connection to the
 * service by name. A port that cannot be bound at start fails the start; on
 * a reload the previous listener keeps serving.
 */
import type { Socket } from 'node:net';
import { formatSocketAddress } from '../config/address.ts';
import type { ServiceConfig } from '../config/types.ts';
import type { Logger } from '../log.ts';
import type { SourceFilter } from './source-filter.ts';
import { TcpListener } from './tcp.ts';

export interface ServiceTcpDeps {
  readonly log: Logger;
  /** Hands a connection to the named service (which balances it); false when the service is gone. */
  connection(service: string, socket: Socket): boolean;
  /** A caller outside the service's tcp.allowFrom was refused. */
  refused(service: string, remote: string | undefined): void;
  /** The filter for an allowFrom list (with node-pod-cidrs resolved); undefined allows all. */
  sourceFilter(ranges: readonly string[] | undefined): Promise<SourceFilter | undefined>;
  /** Bind with SO_REUSEPORT (workers share the port). */
  readonly sharesPorts: boolean;
}

export class ServiceTcpListeners {
  private readonly deps: ServiceTcpDeps;
  private readonly bound = new Map<string, { listener: TcpListener; address: string }>();
  /** Listeners replaced or removed whose connections are still open. */
  private readonly retired = new Set<TcpListener>();

  constructor(deps: ServiceTcpDeps) {
    this.deps = deps;
  }

  /** Open connections on every listener, retired ones included. */
  get active(): number {
    let n = 0;
    for (const { listener } of this.bound.values()) n += listener.active;
    for (const listener of this.retired) n += listener.active;
    return n;
  }

  async sync(services: ReadonlyMap<string, ServiceConfig>, failOnBindError: boolean): Promise<void> {
    for (const [name, entry] of this.bound) {
      if (services.get(name)?.tcp !== undefined) continue;
      this.retire(entry.listener);
      this.bound.delete(name);
    }
    for (const [name, config] of services) {
      const want = config.tcp;
      if (want === undefined) continue;
      const allowFrom = await this.deps.sourceFilter(want.allowFrom);
      const address = formatSocketAddress(want.listen);
      const current = this.bound.get(name);
      if (current?.address === address) {
        current.listener.allowFrom = allowFrom;
        continue;
      }
      const fresh = new TcpListener(
        name,
        want.maxConnections,
        allowFrom,
        {
          connection: (socket) => {
            if (!this.deps.connection(name, socket)) socket.destroy();
          },
          refused: (remote) => this.deps.refused(name, remote),
        },
        this.deps.log,
      );
      try {
        const at = await fresh.listen(want.listen.host, want.listen.port, this.deps.sharesPorts);
        this.deps.log.info({ listener: 'tcp', service: name, address: formatSocketAddress({ host: at.address, port: at.port }) }, 'listening');
      } catch (err) {
        if (failOnBindError) throw err;
        this.deps.log.error({ service: name, address, err }, 'cannot bind the TCP listener; keeping the previous one');
        continue;
      }
      // Connections on a replaced listener continue; only new ones go to the new address.
      if (current !== undefined) this.retire(current.listener);
      this.bound.set(name, { listener: fresh, address });
    }
  }

  /** Stops accepting everywhere (drain); open connections continue until destroyAll(). */
  stopAccepting(): void {
    for (const { listener } of this.bound.values()) listener.stopAccepting();
  }

  destroyAll(): void {
    for (const { listener } of this.bound.values()) {
      listener.stopAccepting();
      listener.destroyAll();
    }
    for (const listener of this.retired) listener.destroyAll();
    this.bound.clear();
    this.retired.clear();
  }

  private retire(listener: TcpListener): void {
    listener.stopAccepting();
    if (listener.active === 0) return;
    this.retired.add(listener);
    listener.server.once('close', () => this.retired.delete(listener));
  }
}
