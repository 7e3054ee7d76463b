/**
 * Kubernetes discovery: the EndpointSlices of one Service, with the official
 * client (@kubernetes/client-node, loaded only by a service that uses it):
 * list by `kubernetes.io/service-name`, then watch from the list's
 * resourceVersion with bookmarks, resuming from the last version seen. A
 * watch that ends is resumed; one the server refuses as too old (410 Gone)
 * is replaced by a fresh list; one that fails or stays silent longer than
 * `idleTimeout` (bookmarks come about once a minute) is restarted with
 * exponential back-off and full jitter, and restarts are spaced by at least
 * a second, so a broken API server is never stormed. Ready endpoints only,
 * each with its zone and node; the port chosen by name or number.
 * Credentials: the pod's service account, or a kubeconfig file.
 */
import type { KubeConfig, V1EndpointSlice, V1EndpointSliceList } from '@kubernetes/client-node';
import { formatSocketAddress } from '../config/address.ts';
import type { EndpointSpec, KubernetesDiscoveryConfig } from '../config/types.ts';
import type { Logger } from '../log.ts';
import type { DiscoverySource } from './source.ts';
import { SourceRecord, type UpdateResult } from './source-record.ts';

export interface KubernetesSourceDeps {
  readonly log: Logger;
  readonly random: () => number;
  /** Wall-clock milliseconds. */
  readonly now: () => number;
  changed(): void;
  counted(result: UpdateResult): void;
}

const SERVICE_LABEL = 'kubernetes.io/service-name';
/** The server ends a watch after this; meshd resumes it from the last version. */
const WATCH_SECONDS = 300;
const MIN_RESTART_SPACING_MS = 1_000;
const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;

type Client = typeof import('@kubernetes/client-node');

export class KubernetesSource implements DiscoverySource {
  readonly name = 'kubernetes';
  private readonly service: string;
  private readonly config: KubernetesDiscoveryConfig;
  private readonly deps: KubernetesSourceDeps;
  private readonly record: SourceRecord;
  private readonly slices = new Map<string, V1EndpointSlice>();
  private client: { k8s: Client; kc: KubeConfig } | undefined;
  private resourceVersion: string | undefined;
  private stopped = false;
  private failures = 0;
  private watch: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastStartAt = 0;
  private counters = { lists: 0, watches: 0, gone: 0, events: 0 };

  constructor(service: string, config: KubernetesDiscoveryConfig, acceptEmptyAfterMs: number, deps: KubernetesSourceDeps) {
    this.service = service;
    this.config = config;
    this.deps = deps;
    this.record = new SourceRecord(acceptEmptyAfterMs, deps.now, (result) => deps.counted(result));
  }

  get endpoints(): readonly EndpointSpec[] {
    return this.record.endpoints;
  }

  /** Resolves after the first list (or its failure); then keeps watching. */
  async start(): Promise<void> {
    try {
      const k8s = await import('@kubernetes/client-node');
      const kc = new k8s.KubeConfig();
      if (this.config.kubeconfig === undefined) kc.loadFromCluster();
      else kc.loadFromFile(this.config.kubeconfig);
      this.client = { k8s, kc };
    } catch (err) {
      this.record.fail(`cannot load Kubernetes credentials: ${(err as Error).message}`);
      this.deps.log.error({ service: this.service, source: 'kubernetes', err: (err as Error).message }, 'Kubernetes discovery cannot start');
      return;
    }
    await this.relist();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.watch?.abort();
  }

  status(): unknown {
    return {
      ...this.record.status(),
      namespace: this.config.namespace,
      service: this.config.service,
      resourceVersion: this.resourceVersion,
      slices: this.slices.size,
      ...this.counters,
    };
  }

  /** Lists the Service's slices afresh, then watches from the list's version. */
  private async relist(): Promise<void> {
    const client = this.client;
    if (client === undefined || this.stopped) return;
    this.counters.lists++;
    try {
      const api = client.kc.makeApiClient(client.k8s.DiscoveryV1Api);
      const list: V1EndpointSliceList = await api.listNamespacedEndpointSlice({
        namespace: this.config.namespace,
        labelSelector: `${SERVICE_LABEL}=${this.config.service}`,
      });
      if (this.isStopped()) return;
      this.slices.clear();
      for (const slice of list.items) this.slices.set(slice.metadata?.name ?? '', slice);
      this.resourceVersion = list.metadata?.resourceVersion;
      this.failures = 0;
      this.publish();
      this.startWatch();
    } catch (err) {
      if (this.isStopped()) return;
      this.failed(`list: ${describe(err)}`);
      this.later(() => void this.relist());
    }
  }

  private startWatch(): void {
    const client = this.client;
    if (client === undefined || this.stopped) return;
    this.counters.watches++;
    this.lastStartAt = this.deps.now();
    const watcher = new client.k8s.Watch(client.kc);
    // The watchdog: a watch with no byte (event or bookmark) for this long is given up and restarted.
    // The client keeps this timer in a private field whose 30 s default is shorter than the server's
    // bookmark interval (about a minute), which would restart every quiet watch.
    Object.assign(watcher, { requestTimeoutMs: this.config.idleTimeoutMs });
    let gone = false;
    const path = `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(this.config.namespace)}/endpointslices`;
    const query = {
      labelSelector: `${SERVICE_LABEL}=${this.config.service}`,
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: WATCH_SECONDS,
    };
    const onEvent = (type: string, object: unknown): void => {
      if (this.stopped) return;
      this.counters.events++;
      const version = (object as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
      if (type === 'ERROR') {
        // A Status: 410 Gone means the version fell out of the server's window; start over.
        gone = (object as { code?: number }).code === 410;
        if (gone) this.counters.gone++;
        this.watch?.abort();
        return;
      }
      if (version !== undefined) this.resourceVersion = version;
      if (type === 'BOOKMARK') return;
      const slice = object as V1EndpointSlice;
      const name = slice.metadata?.name ?? '';
      if (type === 'DELETED') this.slices.delete(name);
      else this.slices.set(name, slice);
      this.failures = 0;
      this.publish();
    };
    const onDone = (err: unknown): void => {
      if (this.stopped) return;
      const status = (err as { statusCode?: number } | null)?.statusCode;
      if (gone || status === 410) {
        this.later(() => void this.relist(), true);
        return;
      }
      if (err !== null && err !== undefined) this.failed(`watch: ${describe(err)}`);
      // A watch the server ended normally (its timeout) resumes at once, unless they end too often.
      this.later(() => this.startWatch(), err === null || err === undefined);
    };
    watcher.watch(path, query, onEvent, onDone).then(
      (controller) => {
        if (this.stopped) controller.abort();
        else this.watch = controller;
      },
      (err: unknown) => onDone(err),
    );
  }

  /** Runs `next` after the back-off (after a failure) or the minimum spacing (after a normal end). */
  private later(next: () => void, normal = false): void {
    if (this.stopped) return;
    const sinceStart = this.deps.now() - this.lastStartAt;
    const delay = normal
      ? Math.max(0, MIN_RESTART_SPACING_MS - sinceStart)
      : this.deps.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(this.failures - 1, 10));
    clearTimeout(this.timer);
    this.timer = setTimeout(next, delay);
    this.timer.unref();
  }

  private failed(reason: string): void {
    this.failures++;
    this.record.fail(reason);
    this.deps.log.warn(
      { service: this.service, source: 'kubernetes', reason, failures: this.failures, keptEndpoints: this.record.endpoints.length },
      'Kubernetes discovery failed; keeping the last good endpoints',
    );
  }

  private publish(): void {
    if (this.record.offer(endpointsOf(this.slices.values(), this.config.port))) {
      this.deps.log.info(
        { service: this.service, source: 'kubernetes', endpoints: this.record.endpoints.length, resourceVersion: this.resourceVersion },
        'Kubernetes discovery changed the endpoints',
      );
      this.deps.changed();
    }
  }

  private isStopped(): boolean {
    return this.stopped;
  }
}

/**
 * The ready endpoints of every slice, at the chosen port: the first address of each (they are
 * interchangeable, per the API), its zone, and its node and pod as labels. An endpoint whose
 * readiness is unknown counts as ready, as the API asks of consumers.
 */
export function endpointsOf(slices: Iterable<V1EndpointSlice>, wanted: string | number | undefined): EndpointSpec[] {
  const out = new Map<string, EndpointSpec>();
  for (const slice of slices) {
    if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') continue;
    const ports = slice.ports ?? [];
    const port = (wanted === undefined ? ports[0] : ports.find((p) => (typeof wanted === 'number' ? p.port === wanted : p.name === wanted)))?.port;
    if (port === undefined) continue;
    for (const e of slice.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      const host = e.addresses[0];
      if (host === undefined) continue;
      const labels: Record<string, string> = {};
      if (e.nodeName !== undefined) labels['node'] = e.nodeName;
      if (e.targetRef?.kind === 'Pod' && e.targetRef.name !== undefined) labels['pod'] = e.targetRef.name;
      if (e.targetRef?.namespace !== undefined) labels['namespace'] = e.targetRef.namespace;
      const address = formatSocketAddress({ host, port });
      out.set(address, { address, host, port, zone: e.zone, weight: 1, labels, identity: undefined });
    }
  }
  return [...out.values()];
}

function describe(err: unknown): string {
  const e = err as { statusCode?: number; code?: number; message?: string; body?: unknown };
  const code = e.statusCode ?? e.code;
  return `${code === undefined ? '' : `${code} `}${e.message ?? String(err)}`.trim();
}
