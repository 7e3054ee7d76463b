/**
 * Kubernetes mesh mode: which port of a Service a call is for. A Host with a
 * port (`users.shop:9090`, as a client sets it for `http://users.shop:9090`)
 * names a Service port, as it would through the cluster's Service IP; the
 * Service object maps that number to the port's name, which its
 * EndpointSlices carry with the pods' own port. A Host without a port, or
 * with the port of meshd's own listener (a caller that reached meshd by a
 * name of the Service), takes the Service's default: its port named http,
 * http2, grpc or web, else its first. Pure.
 */
import { MeshError } from '../errors.ts';
import type { ObjectMeta } from './list-watch.ts';
import type { NamespacedKind } from './namespaced-objects.ts';

export interface ServicePortObject {
  readonly name?: string;
  readonly port?: number;
  readonly protocol?: string;
  readonly targetPort?: number | string;
  readonly appProtocol?: string;
}

export interface ServiceObject extends ObjectMeta {
  readonly spec?: { readonly ports?: readonly ServicePortObject[] };
}

export const SERVICES: NamespacedKind = {
  collection: (namespace) => `/api/v1/namespaces/${namespace}/services`,
  plural: 'Services',
  withoutThem: 'calls that name a Service port are refused until they can be',
};

/** Port names meshd prefers when a call names no port (EndpointSlices carry the same names). */
export const PREFERRED_PORT_NAMES: readonly string[] = ['http', 'http2', 'grpc', 'web'];

/** The Service port a call is for. */
export interface ChosenPort {
  /** The Service port's number. */
  readonly port: number;
  /** Its name, which selects the EndpointSlices' port; undefined for the one port of a single-port Service. */
  readonly name: string | undefined;
  /** Whether it is the port a call without one goes to (its runtime keeps the Service's plain label). */
  readonly isDefault: boolean;
}

/** The default port among `ports` (TCP only): the first preferred name, else the first. */
export function defaultServicePort(ports: readonly ServicePortObject[]): ServicePortObject | undefined {
  const tcp = ports.filter((p) => (p.protocol ?? 'TCP') === 'TCP' && p.port !== undefined);
  return PREFERRED_PORT_NAMES.map((name) => tcp.find((p) => p.name === name)).find((p) => p !== undefined) ?? tcp[0];
}

/**
 * The port `requested` of Service `label`, or why not. `service` is the Service object (undefined:
 * not known, `problem` says why when it could not be read).
 */
export function chooseServicePort(service: ServiceObject | undefined, label: string, requested: number, problem: string | undefined): ChosenPort | MeshError {
  if (service === undefined) {
    if (problem !== undefined) {
      return new MeshError('no_endpoints', `the ports of Service "${label}" cannot be read (${problem}); call it without a port for its default one`, {
        retryAfterSeconds: 1,
      });
    }
    return new MeshError('unknown_service', `no Service "${label}"`);
  }
  const ports = (service.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP' && p.port !== undefined);
  const chosen = ports.find((p) => p.port === requested);
  if (chosen === undefined) {
    const known = ports.map((p) => (p.name === undefined || p.name === '' ? String(p.port) : `${String(p.port)} (${p.name})`)).join(', ');
    return new MeshError('unknown_service', `Service "${label}" has no TCP port ${String(requested)}; its ports: ${known === '' ? 'none' : known}`);
  }
  return {
    port: requested,
    name: ports.length === 1 || chosen.name === '' ? undefined : chosen.name,
    isDefault: defaultServicePort(ports) === chosen,
  };
}
