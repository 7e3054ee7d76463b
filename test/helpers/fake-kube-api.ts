/**
 * A stand-in for the Kubernetes API server, over HTTPS with bearer-token
 * authentication, speaking the real wire format for what meshd reads: Node
 * objects, and EndpointSlices, Pods, Services and HTTPRoutes with list and watch (label selectors,
 * resourceVersion, JSON watch events one per line, bookmarks, 410 Gone for a
 * version that fell out of the window, the server-side watch timeout), plus
 * the discovery documents kubectl asks for first, so that the real kubectl
 * can check it is faithful. Its certificate is made by openssl for
 * 127.0.0.1. The test changes slices, compacts history, drops or silences
 * watches.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FakeNode {
  name: string;
  podCIDRs: string[];
}

export interface FakeSliceEndpoint {
  ip: string;
  ready?: boolean;
  zone?: string;
  nodeName?: string;
  pod?: string;
}

export interface FakeSlice {
  name: string;
  namespace?: string;
  service: string;
  ports: { name?: string; port: number; appProtocol?: string }[];
  endpoints: FakeSliceEndpoint[];
  addressType?: 'IPv4' | 'IPv6';
}

export interface FakeKubeApi {
  url: string;
  token: string;
  caFile: string;
  tokenFile: string;
  /** A kubeconfig for the real clients (kubectl, @kubernetes/client-node). */
  kubeconfig: string;
  /** Paths of the requests received, with their query, in order. */
  requests: string[];
  /** Creates or replaces a slice (ADDED or MODIFIED to every matching watch). */
  applySlice(slice: FakeSlice): void;
  deleteSlice(name: string, namespace?: string): void;
  /** Creates or replaces a pod (ADDED or MODIFIED to every matching watch). */
  applyPod(pod: FakePod): void;
  deletePod(name: string, namespace?: string): void;
  /** Creates or replaces a Service (v1): its ports, as `spec.ports`. */
  applyService(service: { name: string; namespace: string; ports: { name?: string; port: number; targetPort?: number | string; protocol?: string }[] }): void;
  deleteService(name: string, namespace: string): void;
  /** Creates or replaces an HTTPRoute (gateway.networking.k8s.io/v1): metadata.name and .namespace, and spec as given. */
  applyHttpRoute(route: { name: string; namespace: string; spec: Record<string, unknown> }): void;
  deleteHttpRoute(name: string, namespace: string): void;
  /** Forgets the event history: a watch from any earlier version gets 410 Gone. */
  compact(): void;
  /** Sends a BOOKMARK with the current version to every open watch. */
  bookmark(): void;
  /** Cuts every open watch connection. */
  dropWatches(): void;
  /** While true, open watches get nothing (no events, no bookmarks); events are kept for later watches. */
  silent: boolean;
  readonly openWatches: number;
  close(): Promise<void>;
}

interface Event {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  kind: string;
  object: Record<string, unknown>;
}

interface Stored {
  kind: string;
  object: Record<string, unknown>;
}

/** What a list or a watch asks for: a kind, in one namespace or all, by label and field. */
interface Query {
  kind: string;
  namespace: string | undefined;
  selector: [string, string | undefined] | undefined;
  field: [string, string] | undefined;
}

interface Watcher extends Query {
  res: ServerResponse;
}

export interface FakePod {
  name: string;
  namespace?: string;
  ip: string;
  nodeName: string;
  serviceAccount?: string;
  ready?: boolean;
  labels?: Record<string, string>;
  hostIP?: string;
}

/** `host`: the address to listen on (and name in the certificate); 127.0.0.1 unless a test's network namespaces need another. */
export async function startFakeKubeApi(nodes: FakeNode[] = [], host = '127.0.0.1'): Promise<FakeKubeApi> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-fake-kube-'));
  const cert = join(dir, 'ca.crt');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=fake-kube-apiserver',
      '-addext',
      `subjectAltName=IP:${host}`,
    ],
    {
      stdio: 'ignore',
    },
  );
  const token = 'test-service-account-token';
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, token);
  const requests: string[] = [];
  /** Every stored object by "kind/namespace/name". */
  const store = new Map<string, Stored>();
  let resourceVersion = 100;
  let events: Event[] = [];
  let oldestKept = 0;
  const watchers = new Set<Watcher>();
  const sockets = new Set<Socket>();

  const statusObject = (code: number, reason: string, message: string): Record<string, unknown> => ({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    code,
  });
  const send = (res: ServerResponse, code: number, body: unknown): void => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const sliceObject = (s: FakeSlice, rv: number): Record<string, unknown> => ({
    kind: 'EndpointSlice',
    apiVersion: 'discovery.k8s.io/v1',
    metadata: {
      name: s.name,
      namespace: s.namespace ?? 'default',
      uid: `uid-${s.name}`,
      resourceVersion: String(rv),
      generation: 1,
      creationTimestamp: '2026-12-01T00:00:00Z',
      labels: { 'kubernetes.io/service-name': s.service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: s.addressType ?? 'IPv4',
    ports: s.ports.map((p) => ({
      ...(p.name === undefined ? {} : { name: p.name }),
      port: p.port,
      protocol: 'TCP',
      ...(p.appProtocol === undefined ? {} : { appProtocol: p.appProtocol }),
    })),
    endpoints: s.endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.ready ?? true, terminating: false },
      ...(e.zone === undefined ? {} : { zone: e.zone }),
      ...(e.nodeName === undefined ? {} : { nodeName: e.nodeName }),
      ...(e.pod === undefined ? {} : { targetRef: { kind: 'Pod', name: e.pod, namespace: s.namespace ?? 'default', uid: `uid-${e.pod}` } }),
    })),
  });
  const podObject = (p: FakePod, rv: number): Record<string, unknown> => ({
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      name: p.name,
      namespace: p.namespace ?? 'default',
      uid: `uid-${p.name}`,
      resourceVersion: String(rv),
      creationTimestamp: '2026-12-01T00:00:00Z',
      labels: p.labels ?? {},
    },
    spec: { nodeName: p.nodeName, serviceAccountName: p.serviceAccount ?? 'default', containers: [{ name: 'app', image: 'app:1' }] },
    status: {
      phase: 'Running',
      podIP: p.ip,
      podIPs: [{ ip: p.ip }],
      hostIP: p.hostIP ?? '127.0.0.1',
      conditions: [{ type: 'Ready', status: p.ready === false ? 'False' : 'True' }],
    },
  });
  /** The object's labels and fields as selectors see them. */
  const labelsOf = (o: Record<string, unknown>): Record<string, string> => (o['metadata'] as { labels?: Record<string, string> }).labels ?? {};
  const fieldOf = (o: Record<string, unknown>, field: string): string | undefined => {
    if (field === 'spec.nodeName') return (o['spec'] as { nodeName?: string } | undefined)?.nodeName;
    if (field === 'metadata.name') return (o['metadata'] as { name?: string }).name;
    return undefined;
  };
  const matches = (w: Query, kind: string, object: Record<string, unknown>): boolean => {
    const meta = object['metadata'] as { namespace: string };
    if (kind !== w.kind || (w.namespace !== undefined && meta.namespace !== w.namespace)) return false;
    if (w.selector !== undefined) {
      const value = labelsOf(object)[w.selector[0]];
      if (w.selector[1] === undefined ? value === undefined : value !== w.selector[1]) return false;
    }
    return w.field === undefined || fieldOf(object, w.field[0]) === w.field[1];
  };
  const writeEvent = (w: Watcher, type: string, object: Record<string, unknown>): void => {
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  };
  const record = (type: Event['type'], kind: string, object: Record<string, unknown>): void => {
    events.push({ rv: resourceVersion, type, kind, object });
    if (api.silent) return;
    for (const w of watchers) if (matches(w, kind, object)) writeEvent(w, type, object);
  };
  /** `key=value`, or `key` alone (the label exists, whatever its value). */
  const parseSelector = (text: string | null): [string, string | undefined] | undefined => {
    if (text === null || text === '') return undefined;
    const [k, v] = text.split('=');
    return [k!, v];
  };
  const put = (kind: string, namespace: string, name: string, build: (rv: number) => Record<string, unknown>): void => {
    const id = `${kind}/${namespace}/${name}`;
    const existed = store.has(id);
    resourceVersion++;
    const object = build(resourceVersion);
    store.set(id, { kind, object });
    record(existed ? 'MODIFIED' : 'ADDED', kind, object);
  };
  const remove = (kind: string, namespace: string, name: string): void => {
    const id = `${kind}/${namespace}/${name}`;
    const stored = store.get(id);
    if (stored === undefined) return;
    store.delete(id);
    resourceVersion++;
    record('DELETED', kind, { ...stored.object, metadata: { ...(stored.object['metadata'] as object), resourceVersion: String(resourceVersion) } });
  };

  /** List or watch of one collection. */
  const collection = (res: ServerResponse, query: Query, listKind: string, apiVersion: string, url: URL): void => {
    if (url.searchParams.get('watch') !== 'true') {
      const items = [...store.values()].filter((o) => matches(query, o.kind, o.object)).map((o) => o.object);
      send(res, 200, { kind: listKind, apiVersion, metadata: { resourceVersion: String(resourceVersion) }, items });
      return;
    }
    const from = Number(url.searchParams.get('resourceVersion') ?? '0');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    if (from !== 0 && from < oldestKept) {
      // The version is older than the history kept: the client must list again.
      res.end(`${JSON.stringify({ type: 'ERROR', object: statusObject(410, 'Expired', `too old resource version: ${from} (${oldestKept})`) })}\n`);
      return;
    }
    const watcher: Watcher = { ...query, res };
    watchers.add(watcher);
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? '1800');
    const timer = setTimeout(() => res.end(), timeout * 1000);
    res.once('close', () => {
      clearTimeout(timer);
      watchers.delete(watcher);
    });
    if (from === 0) {
      for (const o of store.values()) if (matches(watcher, o.kind, o.object)) writeEvent(watcher, 'ADDED', o.object);
    } else if (!api.silent) {
      for (const e of events) if (e.rv > from && matches(watcher, e.kind, e.object)) writeEvent(watcher, e.type, e.object);
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'https://fake');
    const path = url.pathname;
    requests.push(`${path}${url.search}`);
    if (req.headers.authorization !== `Bearer ${token}`) {
      send(res, 401, statusObject(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    if (path === '/version') {
      send(res, 200, { major: '1', minor: '32', gitVersion: 'v1.32.0-fake', platform: 'linux/amd64' });
      return;
    }
    if (path === '/api') {
      send(res, 200, {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `${host}:${(server.address() as AddressInfo).port}` }],
      });
      return;
    }
    if (path === '/apis') {
      send(res, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [
          {
            name: 'discovery.k8s.io',
            versions: [{ groupVersion: 'discovery.k8s.io/v1', version: 'v1' }],
            preferredVersion: { groupVersion: 'discovery.k8s.io/v1', version: 'v1' },
          },
        ],
      });
      return;
    }
    if (path === '/api/v1') {
      send(res, 200, {
        kind: 'APIResourceList',
        groupVersion: 'v1',
        resources: [
          { name: 'nodes', singularName: 'node', namespaced: false, kind: 'Node', verbs: ['get', 'list', 'watch'], shortNames: ['no'] },
          { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['get', 'list', 'watch'], shortNames: ['po'] },
          { name: 'services', singularName: 'service', namespaced: true, kind: 'Service', verbs: ['get', 'list', 'watch'], shortNames: ['svc'] },
        ],
      });
      return;
    }
    if (path === '/apis/discovery.k8s.io/v1') {
      send(res, 200, {
        kind: 'APIResourceList',
        apiVersion: 'v1',
        groupVersion: 'discovery.k8s.io/v1',
        resources: [{ name: 'endpointslices', singularName: 'endpointslice', namespaced: true, kind: 'EndpointSlice', verbs: ['get', 'list', 'watch'] }],
      });
      return;
    }
    const selector = parseSelector(url.searchParams.get('labelSelector'));
    const fieldText = parseSelector(url.searchParams.get('fieldSelector'));
    const field: [string, string] | undefined = fieldText === undefined ? undefined : [fieldText[0], fieldText[1] ?? ''];
    const slicesPath = /^\/apis\/discovery\.k8s\.io\/v1\/namespaces\/([^/]+)\/endpointslices$/.exec(path);
    if (slicesPath !== null) {
      collection(
        res,
        { kind: 'EndpointSlice', namespace: decodeURIComponent(slicesPath[1]!), selector, field },
        'EndpointSliceList',
        'discovery.k8s.io/v1',
        url,
      );
      return;
    }
    const podsPath = /^\/api\/v1(?:\/namespaces\/([^/]+))?\/pods$/.exec(path);
    if (podsPath !== null) {
      collection(
        res,
        { kind: 'Pod', namespace: podsPath[1] === undefined ? undefined : decodeURIComponent(podsPath[1]), selector, field },
        'PodList',
        'v1',
        url,
      );
      return;
    }
    const servicesPath = /^\/api\/v1\/namespaces\/([^/]+)\/services$/.exec(path);
    if (servicesPath !== null) {
      collection(res, { kind: 'Service', namespace: decodeURIComponent(servicesPath[1]!), selector, field }, 'ServiceList', 'v1', url);
      return;
    }
    const routesPath = /^\/apis\/gateway\.networking\.k8s\.io\/v1\/namespaces\/([^/]+)\/httproutes$/.exec(path);
    if (routesPath !== null) {
      collection(
        res,
        { kind: 'HTTPRoute', namespace: decodeURIComponent(routesPath[1]!), selector, field },
        'HTTPRouteList',
        'gateway.networking.k8s.io/v1',
        url,
      );
      return;
    }
    const nodePath = /^\/api\/v1\/nodes\/([^/]+)$/.exec(path);
    if (nodePath !== null) {
      const name = decodeURIComponent(nodePath[1]!);
      const node = nodes.find((n) => n.name === name);
      if (node === undefined) {
        send(res, 404, statusObject(404, 'NotFound', `nodes "${name}" not found`));
        return;
      }
      send(res, 200, {
        kind: 'Node',
        apiVersion: 'v1',
        metadata: {
          name: node.name,
          uid: `uid-${node.name}`,
          resourceVersion: '1',
          creationTimestamp: '2026-12-01T00:00:00Z',
          labels: { 'kubernetes.io/hostname': node.name },
        },
        spec: { podCIDR: node.podCIDRs[0], podCIDRs: node.podCIDRs },
        status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }] },
      });
      return;
    }
    send(res, 404, statusObject(404, 'NotFound', 'the server could not find the requested resource'));
  };

  const server: Server = createServer({ cert: readFileSync(cert), key: readFileSync(key) }, handle);
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const url = `https://${host}:${(server.address() as AddressInfo).port}`;
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [ { name: fake, cluster: { server: "' + url + '", certificate-authority: "' + cert + '" } } ]',
      'users: [ { name: meshd, user: { token: "' + token + '" } } ]',
      'contexts: [ { name: fake, context: { cluster: fake, user: meshd } } ]',
      'current-context: fake',
      '',
    ].join('\n'),
  );

  const api: FakeKubeApi = {
    url,
    token,
    caFile: cert,
    tokenFile,
    kubeconfig,
    requests,
    silent: false,
    get openWatches() {
      return watchers.size;
    },
    applySlice: (slice) => put('EndpointSlice', slice.namespace ?? 'default', slice.name, (rv) => sliceObject(slice, rv)),
    deleteSlice: (name, namespace = 'default') => remove('EndpointSlice', namespace, name),
    applyPod: (pod) => put('Pod', pod.namespace ?? 'default', pod.name, (rv) => podObject(pod, rv)),
    applyHttpRoute: (route) =>
      put('HTTPRoute', route.namespace, route.name, (rv) => ({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: route.name, namespace: route.namespace, resourceVersion: String(rv), creationTimestamp: '2026-12-03T00:00:00Z' },
        spec: route.spec,
      })),
    deleteHttpRoute: (name, namespace) => remove('HTTPRoute', namespace, name),
    applyService: (service) =>
      put('Service', service.namespace, service.name, (rv) => ({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: service.name, namespace: service.namespace, resourceVersion: String(rv), uid: `uid-svc-${service.name}` },
        spec: { type: 'ClusterIP', ports: service.ports.map((p) => ({ protocol: 'TCP', targetPort: p.port, ...p })) },
      })),
    deleteService: (name, namespace) => remove('Service', namespace, name),
    deletePod: (name, namespace = 'default') => remove('Pod', namespace, name),
    compact: () => {
      events = [];
      oldestKept = resourceVersion + 1;
      resourceVersion++;
    },
    bookmark: () => {
      for (const w of watchers)
        writeEvent(w, 'BOOKMARK', { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', metadata: { resourceVersion: String(resourceVersion) } });
    },
    dropWatches: () => {
      for (const w of watchers) w.res.socket?.destroy();
    },
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          r();
        });
      }),
  };
  return api;
}
