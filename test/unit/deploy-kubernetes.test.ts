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
import { parseConfig } from '../../src/config/load.ts';

const DIR = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url));

type Model = { validate(): void };
const MODELS: Record<string, new (data: never) => Model> = {
  'v1/Namespace': Namespace as never,
  'v1/ServiceAccount': ServiceAccount as never,
  'v1/ConfigMap': ConfigMap as never,
  'v1/Secret': Secret as never,
  'v1/Pod': Pod as never,
  'apps/v1/DaemonSet': DaemonSet as never,
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
        template: { spec: { hostNetwork: boolean; terminationGracePeriodSeconds: number; containers: { readinessProbe: { httpGet: { port: number; path: string } }; livenessProbe: { httpGet: { port: number } }; resources: { requests: object; limits: object }; securityContext: { readOnlyRootFilesystem: boolean; runAsNonRoot: boolean } }[] } };
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
    assert.deepEqual(config.outbound.allowFrom, ['10.244.0.0/16', '127.0.0.0/8']);
    assert.equal(config.inbound?.listen.port, 4143);
  });
});
