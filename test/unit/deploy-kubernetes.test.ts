/**
 * The Kubernetes manifests validate against the Kubernetes API schemas
 * (kubernetes-models, generated from the API's OpenAPI definitions), carry
 * what a per-node proxy needs, and embed a config meshd accepts.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { parseConfig } from '../../src/config/load.ts';

const DIR = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url));

type Model = { validate(): void };
const MODELS: Record<string, new (data: never) => Model> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Pod': Pod,
  'apps/v1/DaemonSet': DaemonSet,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
};

function manifests(): { file: string; doc: Record<string, unknown> }[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((file) => parseAllDocuments(readFileSync(`${DIR}${file}`, 'utf8')).map((d) => ({ file, doc: d.toJS() as Record<string, unknown> })));
}

describe('Kubernetes manifests', () => {
  it('validate against the Kubernetes API schemas', () => {
    const all = manifests();
    assert.ok(all.length >= 6);
    for (const { file, doc } of all) {
      const key = `${String(doc['apiVersion'])}/${String(doc['kind'])}`;
      const Model = MODELS[key];
      assert.ok(Model !== undefined, `${file}: no schema for ${key}`);
      assert.doesNotThrow(() => new Model(doc as never).validate(), `${file} (${key})`);
    }
  });

  it('catches a broken manifest (the validator is not a no-op)', () => {
    const ds = manifests().find((m) => m.doc['kind'] === 'DaemonSet')!.doc as { spec: { updateStrategy: { rollingUpdate: { maxUnavailable: unknown } } } };
    const broken = structuredClone(ds);
    (broken.spec as unknown as Record<string, unknown>)['template'] = 'not a pod template';
    assert.throws(() => new DaemonSet(broken as never).validate());
  });

  it('roll one node at a time, probe the admin port, bound resources, and outlast the drain', () => {
    const ds = manifests().find((m) => m.doc['kind'] === 'DaemonSet')!.doc as {
      spec: {
        updateStrategy: { rollingUpdate: { maxUnavailable: number } };
        template: {
          spec: {
            hostNetwork: boolean;
            terminationGracePeriodSeconds: number;
            containers: {
              readinessProbe: { httpGet: { port: number; path: string } };
              livenessProbe: { httpGet: { port: number } };
              resources: { requests?: object; limits?: object };
              securityContext: { readOnlyRootFilesystem: boolean; runAsNonRoot: boolean };
            }[];
          };
        };
      };
    };
    assert.equal(ds.spec.updateStrategy.rollingUpdate.maxUnavailable, 1);
    const pod = ds.spec.template.spec;
    const c = pod.containers[0]!;
    assert.equal(c.readinessProbe.httpGet.port, 9990);
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    assert.equal(c.livenessProbe.httpGet.port, 9990);
    assert.ok(c.resources.requests && c.resources.limits);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.runAsNonRoot, true);
    assert.equal(pod.hostNetwork, true);
    assert.ok(pod.terminationGracePeriodSeconds > 10);
  });

  it('ship a meshd config that meshd accepts', () => {
    const cm = manifests().find((m) => m.doc['kind'] === 'ConfigMap')!.doc as { data: Record<string, string> };
    const config = parseConfig(cm.data['meshd.yaml']!, 'configmap', '/etc/meshd');
    // This node's pods only (and the node itself), never a cluster-wide range.
    assert.deepEqual(config.outbound.allowFrom, ['node-pod-cidrs', '127.0.0.0/8']);
    assert.equal(config.inbound?.listen.port, 4143);
  });

  it('give meshd what node-pod-cidrs needs, and no more: its node name, a token, get on nodes', () => {
    const all = manifests();
    const ds = all.find((m) => m.doc['kind'] === 'DaemonSet')!.doc as {
      spec: {
        template: {
          spec: { automountServiceAccountToken: boolean; containers: { env: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[] }[] };
        };
      };
    };
    const pod = ds.spec.template.spec;
    assert.equal(pod.automountServiceAccountToken, true);
    assert.equal(pod.containers[0]!.env.find((e) => e.name === 'NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
    const role = all.find((m) => m.doc['kind'] === 'ClusterRole')!.doc as { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
    assert.deepEqual(role.rules, [{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] }]);
    const binding = all.find((m) => m.doc['kind'] === 'ClusterRoleBinding')!.doc as { subjects: { name: string; namespace: string }[] };
    assert.deepEqual(
      binding.subjects.map((s) => `${s.namespace}/${s.name}`),
      ['meshd/meshd'],
    );
  });
});
