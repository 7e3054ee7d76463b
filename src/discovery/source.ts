/**
 * What every discovery source gives a service: a name, its current endpoint
 * list (the last good one while it fails), a status for /debug/state, and a
 * start and a stop. `discoverySources` builds a service's sources from its
 * config: a new kind of source (DNS, Consul, Kubernetes) is one more entry
 * there, and the service runtime does not change.
 */
import type { EndpointSpec, ServiceConfig } from '../config/types.ts';
import type { Logger } from '../log.ts';
import { ConsulSource } from './consul-source.ts';
import { DnsSource } from './dns-source.ts';
import { EndpointsFileSource } from './endpoints-file.ts';
import { KubernetesSource } from './kubernetes-source.ts';
import { MeshSource, type MeshDiscovery } from './mesh-source.ts';
import { backendLabel } from '../kubernetes/gamma.ts';
import type { SliceInformers } from './kubernetes-slices.ts';
import type { UpdateResult } from './source-record.ts';

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
  updated(source: string): void;
  /** Every answer (or failure) of a source, by its result; a failure keeps the last good list. */
  counted(source: string, result: UpdateResult): void;
}

export interface DiscoveryDeps {
  readonly log: Logger;
  readonly random: () => number;
  /** The process's shared EndpointSlice watches, one per namespace. */
  readonly informers: SliceInformers;
  /** Kubernetes mesh mode; undefined otherwise. */
  readonly mesh?: MeshDiscovery | undefined;
}

/** The sources `config` names, as a key that changes whenever they must be rebuilt, and a factory. */
export function discoverySources(config: ServiceConfig, events: DiscoveryEvents, deps: DiscoveryDeps): { key: string; create: () => DiscoverySource[] } {
  const { endpointsFile: path, discovery } = config;
  const wallClock = (): number => Date.now();
  const hooks = (source: string): { changed: () => void; counted: (result: UpdateResult) => void } => ({
    changed: () => events.updated(source),
    counted: (result) => events.counted(source, result),
  });
  return {
    key: JSON.stringify({ file: path, discovery }),
    create: () => {
      const sources: DiscoverySource[] = [];
      if (path !== undefined) {
        sources.push(
          new EndpointsFileSource(
            config.name,
            path,
            {
              updated: () => {
                events.counted('file', 'changed');
                events.updated('file');
              },
              failed: () => events.counted('file', 'error'),
            },
            deps.log,
          ),
        );
      }
      if (discovery.dns !== undefined) {
        sources.push(
          new DnsSource(config.name, discovery.dns, discovery.acceptEmptyAfterMs, { log: deps.log, random: deps.random, now: wallClock, ...hooks('dns') }),
        );
      }
      if (discovery.consul !== undefined) {
        sources.push(
          new ConsulSource(config.name, discovery.consul, discovery.acceptEmptyAfterMs, {
            log: deps.log,
            random: deps.random,
            now: wallClock,
            ...hooks('consul'),
          }),
        );
      }
      if (discovery.kubernetes !== undefined && deps.mesh !== undefined) {
        // Mesh mode: the Service's pods on other nodes are reached through their node's meshd.
        const k = discovery.kubernetes;
        sources.push(
          new MeshSource(config.name, k.service, k.namespace, k.port, discovery.acceptEmptyAfterMs, {
            log: deps.log,
            now: wallClock,
            mesh: deps.mesh,
            ...hooks('kubernetes'),
          }),
        );
      } else if (discovery.kubernetes !== undefined) {
        sources.push(
          new KubernetesSource(config.name, discovery.kubernetes, discovery.acceptEmptyAfterMs, {
            log: deps.log,
            now: wallClock,
            informers: deps.informers,
            ...hooks('kubernetes'),
          }),
        );
      }
      if (discovery.mesh !== undefined && deps.mesh !== undefined) {
        const { service, namespace, port, backends = [] } = discovery.mesh;
        const meshDeps = { log: deps.log, now: wallClock, mesh: deps.mesh };
        // Labelled with its own name and port: an HTTPRoute's backendRef to the Service itself is the subset of that label.
        const own = { labels: backendLabel(service, port) };
        sources.push(new MeshSource(config.name, service, namespace, port, discovery.acceptEmptyAfterMs, { ...meshDeps, ...hooks('kubernetes') }, own));
        for (const backend of backends) {
          const name = `kubernetes:${backend.service}${backend.port === undefined ? '' : `:${backend.port}`}`;
          sources.push(
            new MeshSource(
              config.name,
              backend.service,
              namespace,
              backend.port,
              discovery.acceptEmptyAfterMs,
              { ...meshDeps, ...hooks(name) },
              { name, labels: backendLabel(backend.service, backend.port) },
            ),
          );
        }
      }
      return sources;
    },
  };
}
