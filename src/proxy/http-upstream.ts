/**
 * The HTTP/1.1 connection pool to one endpoint. undici's Pool forwards about
 * twice the requests per core of http-proxy-3's http.Agent path (see
 * docs/design.md), so the hot path uses it; http-proxy-3 keeps upgrades.
 */
import type { buildConnector as Connector, Pool as UndiciPool } from 'undici';
import { buildConnector, Pool } from './undici-parts.ts';
import { meshConnector } from './mesh-connector.ts';
import type { Upstream } from '../balancer/endpoint.ts';
import type { EndpointSpec, EndpointVia, ServiceConfig } from '../config/types.ts';
import type { MeshTlsClient } from '../tls/client.ts';

export interface HttpUpstreamOptions {
  readonly protocol: 'http1' | 'h2c';
  readonly maxConnections: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

export function upstreamOptions(service: ServiceConfig): HttpUpstreamOptions {
  return {
    protocol: service.protocol,
    maxConnections: service.pool.maxConnections,
    idleTimeoutMs: service.pool.idleTimeoutMs,
    connectTimeoutMs: service.connectTimeoutMs,
  };
}

/** The options of one endpoint: the service's, with the HTTP version the endpoint declares. */
export function endpointOptions(options: HttpUpstreamOptions, spec: EndpointSpec): HttpUpstreamOptions {
  return spec.protocol === undefined || spec.protocol === options.protocol ? options : { ...options, protocol: spec.protocol };
}

export function sameUpstreamOptions(a: HttpUpstreamOptions, b: HttpUpstreamOptions): boolean {
  return a.protocol === b.protocol && a.maxConnections === b.maxConnections && a.idleTimeoutMs === b.idleTimeoutMs && a.connectTimeoutMs === b.connectTimeoutMs;
}

/** Pools to node meshds, shared by the endpoints (pods) behind each, with how many use each. */
const VIA_POOLS = new Map<string, { pool: UndiciPool; users: number }>();

function releaseShared(key: string): Promise<void> {
  const shared = VIA_POOLS.get(key);
  if (shared === undefined) return Promise.resolve();
  shared.users--;
  if (shared.users > 0) return Promise.resolve();
  VIA_POOLS.delete(key);
  return shared.pool.close();
}

export class HttpUpstream implements Upstream {
  readonly options: HttpUpstreamOptions;
  /** True when the endpoint is another meshd, reached over mTLS. */
  readonly secure: boolean;
  private readonly spec: EndpointSpec;
  private readonly tls: MeshTlsClient | undefined;
  /**
   * Made on the first request: a service discovered with thousands of endpoints holds no undici
   * pool (nor its connector) for the ones it never calls.
   */
  private created: UndiciPool | undefined;

  constructor(spec: EndpointSpec, options: HttpUpstreamOptions, tls: MeshTlsClient | undefined) {
    this.options = endpointOptions(options, spec);
    this.spec = spec;
    this.secure = spec.identity !== undefined || spec.via !== undefined;
    if (this.secure && tls === undefined) throw new Error(`endpoint ${spec.address} is reached over mTLS but no TLS material is configured`);
    this.tls = tls;
  }

  get pool(): UndiciPool {
    this.created ??= this.spec.via === undefined ? this.createPool(this.spec.host, this.spec.port, this.spec.identity) : this.sharedPool(this.spec.via);
    return this.created;
  }

  /** One pool per node meshd (and settings), shared by every pod of that node this process calls. */
  private sharedPool(via: EndpointVia): UndiciPool {
    const key = JSON.stringify([via.host, via.port, via.identity, this.options]);
    let shared = VIA_POOLS.get(key);
    if (shared === undefined) {
      shared = { pool: this.createPool(via.host, via.port, via.identity), users: 0 };
      VIA_POOLS.set(key, shared);
    }
    shared.users++;
    this.viaKey = key;
    return shared.pool;
  }

  private viaKey: string | undefined;

  private createPool(hostName: string, port: number, identity: string | undefined): UndiciPool {
    const { options } = this;
    const host = hostName.includes(':') ? `[${hostName}]` : hostName;
    return new Pool(`${this.secure ? 'https' : 'http'}://${host}:${port}`, {
      connections: options.maxConnections,
      pipelining: 1,
      keepAliveTimeout: options.idleTimeoutMs,
      keepAliveMaxTimeout: options.idleTimeoutMs,
      connectTimeout: options.connectTimeoutMs,
      // The service deadline (stack/deadline.ts) bounds each exchange; undici's own timers stay off.
      headersTimeout: 0,
      bodyTimeout: 0,
      // Another meshd: mTLS with this host's certificate, the peer's identity checked.
      ...(this.secure ? { connect: meshConnector(this.tls as MeshTlsClient, identity as string, options.connectTimeoutMs) } : {}),
      // h2c: each pool connection is one multiplexed HTTP/2 session (prior knowledge); a new
      // one opens only when a session has its maximum of concurrent streams in use.
      ...(options.protocol === 'h2c' && !this.secure
        ? {
            allowH2: true,
            h2Options: { useH2c: true, maxConcurrentStreams: 100 },
            connect: buildConnector({ useH2c: true, timeout: options.connectTimeoutMs } as Connector.BuildOptions),
          }
        : {}),
    });
  }

  /** Open, idle and queued connection counts for /debug/state. */
  stats(): { connected: number; free: number; pending: number; running: number } {
    if (this.created === undefined) return { connected: 0, free: 0, pending: 0, running: 0 };
    const s = this.created.stats;
    return { connected: s.connected, free: s.free, pending: s.pending, running: s.running };
  }

  /** Lets requests in flight finish, then closes every connection. */
  close(): Promise<void> {
    const shared = this.releaseShare();
    if (shared !== undefined) return shared;
    return this.created?.close() ?? Promise.resolve();
  }

  /** Gives up this endpoint's share of a node meshd's pool (once); undefined when it has none. */
  private releaseShare(): Promise<void> | undefined {
    const key = this.viaKey;
    if (key === undefined) return undefined;
    this.viaKey = undefined;
    this.created = undefined;
    return releaseShared(key);
  }

  /** Closes every connection now, failing requests in flight. */
  destroy(): Promise<void> {
    return this.releaseShare() ?? this.created?.destroy() ?? Promise.resolve();
  }
}
