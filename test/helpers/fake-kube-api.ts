/**
 * A stand-in for the Kubernetes API server, over HTTPS with bearer-token
 * authentication, speaking the real wire format for what meshd reads: Node
 * objects, and EndpointSlices with list and watch (label selectors,
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
  ports: { name?: string; port: number }[];
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
  object: Record<string, unknown>;
}

interface Watcher {
  namespace: string;
  selector: [string, string | undefined] | undefined;
  res: ServerResponse;
}

export async function startFakeKubeApi(nodes: FakeNode[] = []): Promise<FakeKubeApi> {
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
      'subjectAltName=IP:127.0.0.1',
    ],
    {
      stdio: 'ignore',
    },
  );
  const token = 'test-service-account-token';
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, token);
  const requests: string[] = [];
  const slices = new Map<string, Record<string, unknown>>();
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
  const toObject = (s: FakeSlice, rv: number): Record<string, unknown> => ({
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
    ports: s.ports.map((p) => ({ ...(p.name === undefined ? {} : { name: p.name }), port: p.port, protocol: 'TCP' })),
    endpoints: s.endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.ready ?? true, terminating: false },
      ...(e.zone === undefined ? {} : { zone: e.zone }),
      ...(e.nodeName === undefined ? {} : { nodeName: e.nodeName }),
      ...(e.pod === undefined ? {} : { targetRef: { kind: 'Pod', name: e.pod, namespace: s.namespace ?? 'default', uid: `uid-${e.pod}` } }),
    })),
  });
  const matches = (w: { namespace: string; selector: [string, string | undefined] | undefined }, object: Record<string, unknown>): boolean => {
    const meta = object['metadata'] as { namespace: string; labels: Record<string, string> };
    if (meta.namespace !== w.namespace || w.selector === undefined) return meta.namespace === w.namespace;
    const value = meta.labels[w.selector[0]];
    return w.selector[1] === undefined ? value !== undefined : value === w.selector[1];
  };
  const writeEvent = (w: Watcher, type: string, object: Record<string, unknown>): void => {
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  };
  const record = (type: Event['type'], object: Record<string, unknown>): void => {
    events.push({ rv: resourceVersion, type, object });
    if (api.silent) return;
    for (const w of watchers) if (matches(w, object)) writeEvent(w, type, object);
  };
  /** `key=value`, or `key` alone (the label exists, whatever its value). */
  const parseSelector = (text: string | null): [string, string | undefined] | undefined => {
    if (text === null || text === '') return undefined;
    const [k, v] = text.split('=');
    return [k!, v];
  };

  const endpointSlices = (res: ServerResponse, namespace: string, url: URL): void => {
    const selector = parseSelector(url.searchParams.get('labelSelector'));
    if (url.searchParams.get('watch') !== 'true') {
      const items = [...slices.values()].filter((o) => matches({ namespace, selector }, o));
      send(res, 200, { kind: 'EndpointSliceList', apiVersion: 'discovery.k8s.io/v1', metadata: { resourceVersion: String(resourceVersion) }, items });
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
    const watcher: Watcher = { namespace, selector, res };
    watchers.add(watcher);
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? '1800');
    const timer = setTimeout(() => res.end(), timeout * 1000);
    res.once('close', () => {
      clearTimeout(timer);
      watchers.delete(watcher);
    });
    if (from === 0) {
      for (const o of slices.values()) if (matches(watcher, o)) writeEvent(watcher, 'ADDED', o);
    } else if (!api.silent) {
      for (const e of events) if (e.rv > from && matches(watcher, e.object)) writeEvent(watcher, e.type, e.object);
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
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${(server.address() as AddressInfo).port}` }],
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
        resources: [{ name: 'nodes', singularName: 'node', namespaced: false, kind: 'Node', verbs: ['get', 'list', 'watch'], shortNames: ['no'] }],
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
    const slicesPath = /^\/apis\/discovery\.k8s\.io\/v1\/namespaces\/([^/]+)\/endpointslices$/.exec(path);
    if (slicesPath !== null) {
      endpointSlices(res, decodeURIComponent(slicesPath[1]!), url);
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
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
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
    applySlice: (slice) => {
      const id = `${slice.namespace ?? 'default'}/${slice.name}`;
      const existed = slices.has(id);
      resourceVersion++;
      const object = toObject(slice, resourceVersion);
      slices.set(id, object);
      record(existed ? 'MODIFIED' : 'ADDED', object);
    },
    deleteSlice: (name, namespace = 'default') => {
      const id = `${namespace}/${name}`;
      const object = slices.get(id);
      if (object === undefined) return;
      slices.delete(id);
      resourceVersion++;
      record('DELETED', { ...object, metadata: { ...(object['metadata'] as object), resourceVersion: String(resourceVersion) } });
    },
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
