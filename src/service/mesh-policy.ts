/**
 * Kubernetes mesh mode: who may call which Service, by the calling pod's
 * workload identity (spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT).
 * The meshd of the destination pod's node decides: the receiving meshd for a
 * pod on another node, the caller's own for a pod on its node. A Service the
 * config does not name admits every caller; a caller that is no pod (its
 * identity unknown) passes a deny list and fails an allow list.
 */
import type { KubernetesMeshConfig } from '../config/types.ts';
import { compilePolicy, type Verdict } from '../identity/spiffe.ts';

export class MeshPolicies {
  private compiledFor: KubernetesMeshConfig['authorization'] | undefined;
  private compiled = new Map<string, (identity: string) => Verdict>();

  /** The verdict for a caller of `service` ("name.namespace"). */
  verdict(mesh: KubernetesMeshConfig, service: string, callerIdentity: string | undefined): Verdict {
    if (this.compiledFor !== mesh.authorization) {
      // A reload brings a new map: compile once per config.
      this.compiledFor = mesh.authorization;
      this.compiled = new Map([...mesh.authorization].map(([name, policy]) => [name, compilePolicy(policy)]));
    }
    const policy = this.compiled.get(service);
    if (policy === undefined) return { allowed: true, rule: 'no policy for the service' };
    return policy(callerIdentity ?? '');
  }
}
