/**
 * meshd's own header fields: what one meshd tells the next hop, the local
 * app, or a caller. Only meshd sets them; a caller's copy of any `x-meshd-*`
 * request field is dropped (proxy/headers.ts).
 */

/** Milliseconds the caller will still wait; meshd sets it on every upstream request. */
export const TIMEOUT_HEADER = 'x-meshd-timeout-ms';

/** Set by a meshd that shed the request because its local service is overloaded. */
export const OVERLOADED_HEADER = 'x-meshd-overloaded';

/** A caller marks a non-idempotent request safe to send again with `x-meshd-retryable: true`. */
export const RETRYABLE_HEADER = 'x-meshd-retryable';

/** The verified caller, as the local service sees it. */
export const PEER_IDENTITY_HEADER = 'x-meshd-peer-identity';

/** Kubernetes mesh mode: the Service ("name.namespace") and the pod ("ip:port") a node's meshd is asked to deliver to. */
export const MESH_SERVICE_HEADER = 'x-meshd-service';
export const MESH_TARGET_HEADER = 'x-meshd-target';

/**
 * Kubernetes mesh mode: the calling pod as its node's meshd observed it (by its address), passed
 * from meshd to meshd and on to the app: its workload identity, namespace, service account, pod.
 */
export const CALLER_IDENTITY_HEADER = 'x-meshd-caller-identity';
export const CALLER_NAMESPACE_HEADER = 'x-meshd-caller-namespace';
export const CALLER_SERVICE_ACCOUNT_HEADER = 'x-meshd-caller-service-account';
export const CALLER_POD_HEADER = 'x-meshd-caller-pod';

/** On a response (and in logs and metrics): the fault injection that acted on the request, so no one takes it for a real failure. */
export const FAULT_HEADER = 'x-meshd-fault';

/** The caller identity in a list of caller fields ([name, value, …]), as meshd itself wrote them. */
export function callerIdentityIn(fields: readonly string[] | undefined): string | undefined {
  if (fields === undefined) return undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === CALLER_IDENTITY_HEADER) return fields[i + 1];
  return undefined;
}
