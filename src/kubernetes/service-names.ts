/**
 * How a pod names a Service in Kubernetes mesh mode, as cluster DNS does:
 * `users` (the caller's own namespace), `users.shop`, `users.shop.svc` and
 * `users.shop.svc.cluster.local`. Pure: the caller's namespace comes from
 * the caller's pod, looked up by its address.
 */
import { MeshError } from '../errors.ts';

export interface ServiceRef {
  readonly name: string;
  readonly namespace: string;
}

/** DNS-1035 labels: what Kubernetes accepts as Service and namespace names. */
const LABEL = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;
const NAMESPACE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** `host` is already lowercased, without port or trailing dot (listeners/request-target.ts). */
export function resolveServiceName(host: string, callerNamespace: string | undefined, clusterDomain: string): ServiceRef | MeshError {
  let rest = host;
  const fullSuffix = `.svc.${clusterDomain}`;
  if (rest.endsWith(fullSuffix)) rest = rest.slice(0, -fullSuffix.length);
  else if (rest.endsWith('.svc')) rest = rest.slice(0, -'.svc'.length);
  const parts = rest.split('.');
  if (parts.length > 2)
    return new MeshError('unknown_service', `"${host}" is not a Service name: use NAME, NAME.NAMESPACE or NAME.NAMESPACE.svc.${clusterDomain}`);
  const [name = '', namespace = callerNamespace] = parts;
  if (!LABEL.test(name)) return new MeshError('unknown_service', `"${name}" is not a valid Service name`);
  if (namespace === undefined) {
    return new MeshError(
      'unknown_service',
      `"${host}" names no namespace and the caller is not a pod of this node (its namespace is unknown): use NAME.NAMESPACE`,
    );
  }
  if (!NAMESPACE.test(namespace)) return new MeshError('unknown_service', `"${namespace}" is not a valid namespace`);
  return { name, namespace };
}

/** The label meshd uses for a Service: its metrics, its logs, its authorization key. */
export function serviceLabel(ref: ServiceRef): string {
  return `${ref.name}.${ref.namespace}`;
}

/** Reads a label back ("users.shop"); undefined when malformed. */
export function parseServiceLabel(label: string): ServiceRef | undefined {
  const dot = label.indexOf('.');
  if (dot < 0) return undefined;
  const name = label.slice(0, dot);
  const namespace = label.slice(dot + 1);
  return LABEL.test(name) && NAMESPACE.test(namespace) ? { name, namespace } : undefined;
}
