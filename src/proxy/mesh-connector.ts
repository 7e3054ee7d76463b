/**
 * undici connectors for endpoints that are other meshd hosts: this host's
 * certificate, the trust bundle and the peer's identity check (from
 * tls/client.ts), with a TLS session cache per peer identity. Connectors
 * follow rotation: new material builds a new connector for new connections;
 * open ones are left alone.
 */
import { LRUCache } from 'lru-cache';
import type { buildConnector as Connector } from 'undici';
import type { MeshTlsClient } from '../tls/client.ts';
import type { TlsMaterial } from '../tls/material.ts';
import { buildConnector } from './undici-parts.ts';

interface CachedConnector {
  readonly material: TlsMaterial;
  readonly connector: Connector.connector;
}

/** One connector (and TLS session cache) per peer identity and timeout; bounded for meshes of any size. */
const caches = new WeakMap<MeshTlsClient, LRUCache<string, CachedConnector>>();

/** An undici `connect` function for an endpoint that must present `identity`. */
export function meshConnector(tls: MeshTlsClient, identity: string, timeoutMs: number): Connector.connector {
  let cache = caches.get(tls);
  if (cache === undefined) {
    cache = new LRUCache<string, CachedConnector>({ max: 1_024 });
    caches.set(tls, cache);
  }
  const connectors = cache;
  const key = `${identity}\u0000${timeoutMs}`;
  return (options, callback) => {
    const material = tls.material;
    let entry = connectors.get(key);
    if (entry === undefined || entry.material !== material) {
      const connector = buildConnector({ ...tls.connectionOptions(identity), timeout: timeoutMs, maxCachedSessions: 256 });
      entry = { material, connector };
      connectors.set(key, entry);
    }
    entry.connector(options, callback);
  };
}
