/**
 * The HTTP/1.1 connection pool to one endpoint. undici's Pool forwards about
 * twice the requests per core of http-proxy-3's http.Agent path (see
 * docs/design.md), so the hot path uses it; http-proxy-3 keeps upgrades.
 */
import type { buildConnector as Connector, Pool as UndiciPool } from 'undici';
import { buildConnector, Pool } from './undici-parts.ts';
import { meshConnector } from './mesh-connector.ts';
import type { Upstream } from '../balancer/endpoint.ts';
import type { EndpointSpec, ServiceConfig } from '../config/types.ts';
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

export function sameUpstreamOptions(a: HttpUpstreamOptions, b: HttpUpstreamOptions): boolean {
  return a.protocol === b.protocol && a.maxConnections === b.maxConnections && a.idleTimeoutMs === b.idleTimeoutMs && a.connectTimeoutMs === b.connectTimeoutMs;
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
    this.options = options;
    this.spec = spec;
    this.secure = spec.identity !== undefined;
    if (this.secure && tls === undefined) throw new Error(`endpoint ${spec.address} has an identity but no TLS material is configured`);
    this.tls = tls;
  }

  get pool(): UndiciPool {
    this.created ??= this.createPool();
    return this.created;
  }

  private createPool(): UndiciPool {
    const { spec, options } = this;
    const host = spec.host.includes(':') ? `[${spec.host}]` : spec.host;
    return new Pool(`${this.secure ? 'https' : 'http'}://${host}:${spec.port}`, {
      connections: options.maxConnections,
      pipelining: 1,
      keepAliveTimeout: options.idleTimeoutMs,
      keepAliveMaxTimeout: options.idleTimeoutMs,
      connectTimeout: options.connectTimeoutMs,
      // The service deadline (stack/deadline.ts) bounds each exchange; undici's own timers stay off.
      headersTimeout: 0,
      bodyTimeout: 0,
      // Another meshd: mTLS with this host's certificate, the peer's identity checked.
      ...(this.secure ? { connect: meshConnector(this.tls as MeshTlsClient, spec.identity as string, options.connectTimeoutMs) } : {}),
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
    return this.created?.close() ?? Promise.resolve();
  }

  /** Closes every connection now, failing requests in flight. */
  destroy(): Promise<void> {
    return this.created?.destroy() ?? Promise.resolve();
  }
}
