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
    // Kubernetes mesh mode, reached by every node on the port it listens on.
    assert.equal(config.kubernetes.mesh?.inboundPort, 4143);
    assert.equal(config.workers, 1);
  });

  it('let Prometheus scrape each node on the scrape listener the config opens, and nothing more', () => {
    const cm = manifests().find((m) => m.doc['kind'] === 'ConfigMap')!.doc as { data: Record<string, string> };
    const config = parseConfig(cm.data['meshd.yaml']!, 'configmap', '/etc/meshd');
    // The admin API (state, changes, dashboard) stays on loopback; only /metrics leaves the node.
    assert.equal(config.admin.listen.host, '127.0.0.1');
    const metrics = config.metrics!;
    assert.ok(metrics.allowFrom !== undefined && metrics.allowFrom.length > 0);
    assert.ok(!metrics.allowFrom.includes('0.0.0.0/0'));
    const ds = manifests().find((m) => m.doc['kind'] === 'DaemonSet')!.doc as {
      spec: {
        selector: { matchLabels: Record<string, string> };
        template: {
          metadata: { annotations: Record<string, string> };
          spec: { containers: { name: string; ports: { name: string; containerPort: number }[] }[] };
        };
      };
    };
    const port = ds.spec.template.spec.containers.find((c) => c.name === 'meshd')!.ports.find((p) => p.name === 'metrics');
    assert.equal(port?.containerPort, metrics.listen.port);
    assert.equal(ds.spec.template.metadata.annotations['prometheus.io/port'], String(metrics.listen.port));
    assert.equal(ds.spec.template.metadata.annotations['prometheus.io/path'], '/metrics');
    const monitor = parseAllDocuments(readFileSync(`${DIR}prometheus/podmonitor.yaml`, 'utf8'))[0]!.toJS() as {
      kind: string;
      metadata: { namespace: string };
      spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string; path: string }[] };
    };
    assert.equal(monitor.kind, 'PodMonitor');
    assert.equal(monitor.metadata.namespace, 'meshd');
    assert.deepEqual(monitor.spec.selector.matchLabels, ds.spec.selector.matchLabels);
    assert.deepEqual(
      monitor.spec.podMetricsEndpoints.map((e) => [e.port, e.path]),
      [['metrics', '/metrics']],
    );
  });

  it('keep the state directory on the node, writable by meshd alone, in the directory the config names', () => {
    const cm = manifests().find((m) => m.doc['kind'] === 'ConfigMap')!.doc as { data: Record<string, string> };
    const config = parseConfig(cm.data['meshd.yaml']!, 'configmap', '/etc/meshd');
    interface Container {
      name: string;
      command?: string[];
      volumeMounts: { name: string; mountPath: string }[];
      securityContext: { runAsUser?: number; capabilities?: { add?: string[]; drop?: string[] }; allowPrivilegeEscalation?: boolean };
    }
    const ds = manifests().find((m) => m.doc['kind'] === 'DaemonSet')!.doc as {
      spec: {
        template: { spec: { containers: Container[]; initContainers: Container[]; volumes: { name: string; hostPath?: { path: string; type: string } }[] } };
      };
    };
    const pod = ds.spec.template.spec;
    const meshd = pod.containers.find((c) => c.name === 'meshd')!;
    const mount = meshd.volumeMounts.find((m) => m.mountPath === config.stateDir);
    assert.ok(mount !== undefined, `meshd mounts ${String(config.stateDir)}`);
    // A directory of the node: the next meshd pod on it finds what the last one kept.
    assert.deepEqual(pod.volumes.find((v) => v.name === mount.name)?.hostPath, { path: '/var/lib/meshd', type: 'DirectoryOrCreate' });
    const init = pod.initContainers.find((c) => c.volumeMounts.some((m) => m.name === mount.name))!;
    const script = init.command?.join(' ') ?? '';
    assert.match(script, new RegExp(`chown ${meshd.securityContext.runAsUser}:\\d+ ${config.stateDir}`));
    assert.match(script, /chmod 0700/);
    // Root for one chown, with that capability alone.
    assert.deepEqual(init.securityContext.capabilities, { drop: ['ALL'], add: ['CHOWN'] });
    assert.equal(init.securityContext.allowPrivilegeEscalation, false);
  });

  it('give each node its own certificate from cert-manager, for the identity its peers expect', () => {
    const all = manifests();
    const cm = all.find((m) => m.doc['kind'] === 'ConfigMap')!.doc as { data: Record<string, string> };
    const mesh = parseConfig(cm.data['meshd.yaml']!, 'configmap', '/etc/meshd').kubernetes.mesh!;
    const ds = all.find((m) => m.doc['kind'] === 'DaemonSet')!.doc as {
      metadata: { namespace: string; labels: Record<string, string> };
      spec: {
        template: {
          metadata: { labels: Record<string, string> };
          spec: { volumes: { name: string; csi?: { driver: string; volumeAttributes: Record<string, string> } }[] };
        };
      };
    };
    // Peers find meshd pods by namespace and labels, and expect spiffe://TRUST/ns/NAMESPACE/pod/NAME.
    assert.equal(ds.metadata.namespace, mesh.meshdNamespace);
    const [key, value] = mesh.meshdSelector.split('=');
    assert.equal(ds.spec.template.metadata.labels[key!], value);
    const tls = ds.spec.template.spec.volumes.find((v) => v.name === 'tls')!.csi!;
    assert.equal(tls.driver, 'csi.cert-manager.io');
    assert.equal(tls.volumeAttributes['csi.cert-manager.io/uri-sans'], `spiffe://${mesh.trustDomain}/ns/${mesh.meshdNamespace}/pod/\${POD_NAME}`);
    assert.match(tls.volumeAttributes['csi.cert-manager.io/key-usages']!, /server auth.*client auth/);
    // The issuer it names is the mesh CA the cert-manager manifests make.
    const issuers = parseAllDocuments(readFileSync(`${DIR}cert-manager/issuers.yaml`, 'utf8')).map(
      (d) => d.toJS() as { kind: string; metadata: { name: string }; spec: Record<string, unknown> },
    );
    const issuer = issuers.find(
      (i) => i.kind === tls.volumeAttributes['csi.cert-manager.io/issuer-kind'] && i.metadata.name === tls.volumeAttributes['csi.cert-manager.io/issuer-name'],
    );
    assert.ok(issuer?.spec['ca'] !== undefined, 'the CSI volume names the CA issuer');
    const root = issuers.find((i) => i.kind === 'Certificate')!;
    assert.equal((issuer.spec['ca'] as { secretName: string }).secretName, root.spec['secretName']);
    assert.equal(root.spec['isCA'], true);
  });

  it('give meshd what mesh mode reads, and no more: its node name, a token, read-only Nodes, Pods and EndpointSlices', () => {
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
    assert.deepEqual(role.rules, [
      { apiGroups: [''], resources: ['nodes'], verbs: ['get'] },
      { apiGroups: [''], resources: ['pods', 'services'], verbs: ['list', 'watch'] },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      { apiGroups: ['gateway.networking.k8s.io'], resources: ['httproutes'], verbs: ['list', 'watch'] },
    ]);
    const binding = all.find((m) => m.doc['kind'] === 'ClusterRoleBinding')!.doc as { subjects: { name: string; namespace: string }[] };
    assert.deepEqual(
      binding.subjects.map((s) => `${s.namespace}/${s.name}`),
      ['meshd/meshd'],
    );
  });
});
