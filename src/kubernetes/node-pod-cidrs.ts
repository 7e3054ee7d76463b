/**
 * The pod address ranges of the node meshd runs on (Node.spec.podCIDRs),
 * which `allowFrom: [ node-pod-cidrs ]` stands for: on a Kubernetes node the
 * outbound listener binds the node's address, and only this node's pods may
 * use it (the whole cluster's pod range would let any pod use any node's
 * meshd and its identity). Read once at start, retried with back-off for a
 * while; meshd does not start without them (it fails closed).
 */
import { NODE_POD_CIDRS } from '../config/address.ts';
import type { KubernetesSettings } from '../config/types.ts';
import { apiAccess, getJson, KubernetesError } from './api.ts';

export interface RetryPlan {
  readonly attempts: number;
  readonly firstDelayMs: number;
  readonly timeoutMs: number;
}

const DEFAULT_PLAN: RetryPlan = { attempts: 6, firstDelayMs: 500, timeoutMs: 5_000 };

export async function nodePodCidrs(settings: KubernetesSettings, env: NodeJS.ProcessEnv, plan: RetryPlan = DEFAULT_PLAN): Promise<string[]> {
  const nodeName = settings.nodeName ?? env['NODE_NAME'];
  if (nodeName === undefined || nodeName === '')
    throw new KubernetesError('the node name is unknown: set NODE_NAME from the downward API (spec.nodeName) or kubernetes.nodeName');
  const access = await apiAccess(settings, env);
  let last: unknown;
  for (let attempt = 0; attempt < plan.attempts; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, plan.firstDelayMs * 2 ** (attempt - 1)));
    try {
      const node = (await getJson(access, `/api/v1/nodes/${encodeURIComponent(nodeName)}`, plan.timeoutMs)) as {
        spec?: { podCIDR?: unknown; podCIDRs?: unknown };
      };
      const list = Array.isArray(node.spec?.podCIDRs) ? node.spec.podCIDRs : typeof node.spec?.podCIDR === 'string' ? [node.spec.podCIDR] : [];
      const cidrs = list.filter((c): c is string => typeof c === 'string' && c !== '');
      // Transient: the node controller assigns it shortly after the node registers.
      if (cidrs.length === 0) throw new KubernetesError(`node ${nodeName} has no pod CIDR yet (spec.podCIDRs is empty)`);
      return cidrs;
    } catch (err) {
      last = err;
      if (err instanceof KubernetesError && !err.transient) break;
    }
  }
  throw last instanceof Error ? last : new KubernetesError(String(last));
}

/** `allowFrom` with `node-pod-cidrs` replaced by the node's ranges (read only when the entry is used). */
export async function expandAllowFrom(list: readonly string[] | undefined, cidrs: () => Promise<string[]>): Promise<string[] | undefined> {
  if (list === undefined || !list.includes(NODE_POD_CIDRS)) return list === undefined ? undefined : [...list];
  const node = await cidrs();
  return list.flatMap((entry) => (entry === NODE_POD_CIDRS ? node : [entry]));
}
