/**
 * What every discovery source gives a service: a name, its current endpoint
 * list (the last good one while it fails), a status for /debug/state, and a
 * start and a stop. `discoverySources` builds a service's sources from its
 * config: a new kind of source (DNS, Consul, Kubernetes) is one more entry
 * there, and the service runtime does not change.
 */
import type { EndpointSpec, ServiceConfig } from '../config/types.ts';
import type { Logger } from '../log.ts';
import { EndpointsFileSource } from './endpoints-file.ts';

export interface DiscoverySource {
  /** "file", …: the name endpoints are listed under in /debug/state and metrics. */
  readonly name: string;
  readonly endpoints: readonly EndpointSpec[];
  /** Reads once, then follows changes; a source that cannot read starts empty and says why. */
  start(): Promise<void>;
  stop(): void;
  status(): unknown;
}

export interface DiscoveryEvents {
  /** A source has a new, valid endpoint list. */
  updated(source: DiscoverySource): void;
  /** A source could not read; its last good list stays. */
  failed(source: DiscoverySource, reason: string): void;
}

/** The sources `config` names, as a key that changes whenever they must be rebuilt, and a factory. */
export function discoverySources(config: ServiceConfig, events: DiscoveryEvents, log: Logger): { key: string; create: () => DiscoverySource[] } {
  const path = config.endpointsFile;
  return {
    key: JSON.stringify({ file: path }),
    create: () => {
      const sources: DiscoverySource[] = [];
      if (path !== undefined) {
        const file: EndpointsFileSource = new EndpointsFileSource(
          config.name,
          path,
          { updated: () => events.updated(file), failed: (reason) => events.failed(file, reason) },
          log,
        );
        sources.push(file);
      }
      return sources;
    },
  };
}
