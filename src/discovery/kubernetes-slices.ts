/**
 * One list + watch of the EndpointSlices of a namespace, shared by every
 * service of this meshd discovered there (Linkerd's destination controller
 * and client-go's informers work the same way): a thousand services cost one
 * watch, not a thousand. It selects slices that belong to a Service (label
 * `kubernetes.io/service-name`), keeps them by Service, and tells each
 * subscriber when its Service's slices change. The watch resumes from the
 * last resourceVersion (bookmarks keep it fresh); a 410 Gone means the
 * version fell out of the server's window and the whole set is listed again;
 * a watch that fails, or stays silent longer than the idle timeout, is
 * restarted with exponential back-off and full jitter, and restarts are
 * spaced by at least a second, so a broken API server is never stormed. The
 * official client (@kubernetes/client-node) is loaded only when a service
 * uses Kubernetes discovery.
 */
import type { KubeConfig, V1EndpointSliceList } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';

/**
 * An EndpointSlice as meshd reads it (discovery.k8s.io/v1): the fields it uses, whether the object
 * came from the client's list (a class instance) or a watch event (plain JSON).
 */
export interface SliceObject {
  readonly metadata?: { readonly name?: string; readonly resourceVersion?: string; readonly labels?: Readonly<Record<string, string>> };
  readonly addressType: string;
  readonly ports?: readonly { readonly name?: string; readonly port?: number }[];
  readonly endpoints?: readonly {
    readonly addresses: readonly string[];
    readonly conditions?: { readonly ready?: boolean };
    readonly zone?: string;
    readonly nodeName?: string;
    readonly targetRef?: { readonly kind?: string; readonly name?: string; readonly namespace?: string };
  }[];
}

const SERVICE_LABEL = 'kubernetes.io/service-name';
/** The server ends a watch after this; it is resumed from the last version. */
const WATCH_SECONDS = 300;
const MIN_RESTART_SPACING_MS = 1_000;
const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;

type Client = typeof import('@kubernetes/client-node');

export interface SliceSubscriber {
  /** The Service's slices changed (or were listed). */
  changed(slices: readonly SliceObject[]): void;
  /** The list or the watch failed; the last known slices stay. */
  failed(reason: string): void;
}

export interface InformerStatus {
  readonly namespace: string;
  readonly resourceVersion: string | undefined;
  readonly synced: boolean;
  readonly lists: number;
  readonly watches: number;
  readonly gone: number;
  readonly events: number;
  readonly services: number;
}

export interface InformerDeps {
  readonly log: Logger;
  readonly random: () => number;
  readonly now: () => number;
}

export class SliceInformer {
  readonly namespace: string;
  private readonly kubeconfig: string | undefined;
  private readonly idleTimeoutMs: number;
  private readonly deps: InformerDeps;
  /** Slices by Service, then by slice name. */
  private readonly byService = new Map<string, Map<string, SliceObject>>();
  private readonly subscribers = new Map<string, Set<SliceSubscriber>>();
  private client: { k8s: Client; kc: KubeConfig } | undefined;
  private resourceVersion: string | undefined;
  private synced = false;
  private stopped = false;
  private failures = 0;
  private watch: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastStartAt = 0;
  private readonly counters = { lists: 0, watches: 0, gone: 0, events: 0 };
  /** When the API server last said anything (a list, an event, a bookmark): the namespace's staleness. */
  private lastHeardAt: number | undefined;
  private starting: Promise<void> | undefined;

  constructor(namespace: string, kubeconfig: string | undefined, idleTimeoutMs: number, deps: InformerDeps) {
    this.namespace = namespace;
    this.kubeconfig = kubeconfig;
    this.idleTimeoutMs = idleTimeoutMs;
    this.deps = deps;
  }

  get subscriberCount(): number {
    let n = 0;
    for (const set of this.subscribers.values()) n += set.size;
    return n;
  }

  /** Subscribes to one Service; resolves once the first list has answered (or failed). */
  async subscribe(service: string, subscriber: SliceSubscriber): Promise<void> {
    let set = this.subscribers.get(service);
    if (set === undefined) this.subscribers.set(service, (set = new Set()));
    set.add(subscriber);
    this.starting ??= this.start();
    await this.starting;
    if (this.synced) subscriber.changed(this.slicesOf(service));
  }

  unsubscribe(service: string, subscriber: SliceSubscriber): void {
    const set = this.subscribers.get(service);
    set?.delete(subscriber);
    if (set?.size === 0) this.subscribers.delete(service);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.watch?.abort();
  }

  status(): InformerStatus {
    return { namespace: this.namespace, resourceVersion: this.resourceVersion, synced: this.synced, ...this.counters, services: this.byService.size };
  }

  /** Seconds since the API server last said anything about the namespace; undefined before the first list. */
  staleSeconds(): number | undefined {
    return this.lastHeardAt === undefined ? undefined : Math.max(0, (this.deps.now() - this.lastHeardAt) / 1000);
  }

  private slicesOf(service: string): SliceObject[] {
    return [...(this.byService.get(service)?.values() ?? [])];
  }

  private async start(): Promise<void> {
    try {
      const k8s = await import('@kubernetes/client-node');
      const kc = new k8s.KubeConfig();
      if (this.kubeconfig === undefined) kc.loadFromCluster();
      else kc.loadFromFile(this.kubeconfig);
      this.client = { k8s, kc };
    } catch (err) {
      this.fail(`cannot load Kubernetes credentials: ${(err as Error).message}`);
      return;
    }
    await this.relist();
  }

  /** Lists every Service's slices afresh, then watches from the list's version. */
  private async relist(): Promise<void> {
    const client = this.client;
    if (client === undefined || this.stopped) return;
    this.counters.lists++;
    try {
      const api = client.kc.makeApiClient(client.k8s.DiscoveryV1Api);
      const list: V1EndpointSliceList = await api.listNamespacedEndpointSlice({ namespace: this.namespace, labelSelector: SERVICE_LABEL });
      if (this.isStopped()) return;
      const before = new Set(this.byService.keys());
      this.byService.clear();
      for (const slice of list.items) this.put(slice);
      this.resourceVersion = list.metadata?.resourceVersion;
      this.synced = true;
      this.lastHeardAt = this.deps.now();
      this.failures = 0;
      for (const service of new Set([...before, ...this.byService.keys(), ...this.subscribers.keys()])) this.notify(service);
      this.startWatch();
    } catch (err) {
      if (this.isStopped()) return;
      this.fail(`list: ${describe(err)}`);
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
    Object.assign(watcher, { requestTimeoutMs: this.idleTimeoutMs });
    let gone = false;
    const path = `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(this.namespace)}/endpointslices`;
    const query = { labelSelector: SERVICE_LABEL, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: WATCH_SECONDS };
    const onEvent = (type: string, object: unknown): void => {
      if (this.stopped) return;
      this.counters.events++;
      this.lastHeardAt = this.deps.now();
      if (type === 'ERROR') {
        // A Status: 410 Gone means the version fell out of the server's window; start over.
        gone = (object as { code?: number }).code === 410;
        if (gone) this.counters.gone++;
        this.watch?.abort();
        return;
      }
      const version = (object as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
      if (version !== undefined) this.resourceVersion = version;
      if (type === 'BOOKMARK') return;
      const slice = object as SliceObject;
      const service = slice.metadata?.labels?.[SERVICE_LABEL];
      if (service === undefined) return;
      if (type === 'DELETED') this.byService.get(service)?.delete(slice.metadata?.name ?? '');
      else this.put(slice);
      this.failures = 0;
      this.notify(service);
    };
    const onDone = (err: unknown): void => {
      if (this.stopped) return;
      const status = (err as { statusCode?: number } | null)?.statusCode;
      if (gone || status === 410) {
        this.later(() => void this.relist(), true);
        return;
      }
      if (err !== null && err !== undefined) this.fail(`watch: ${describe(err)}`);
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

  private put(slice: SliceObject): void {
    const service = slice.metadata?.labels?.[SERVICE_LABEL];
    if (service === undefined) return;
    let slices = this.byService.get(service);
    if (slices === undefined) this.byService.set(service, (slices = new Map<string, SliceObject>()));
    slices.set(slice.metadata?.name ?? '', slice);
  }

  private notify(service: string): void {
    const subscribers = this.subscribers.get(service);
    if (subscribers === undefined) return;
    const slices = this.slicesOf(service);
    for (const s of subscribers) s.changed(slices);
  }

  private fail(reason: string): void {
    this.failures++;
    this.deps.log.warn(
      { source: 'kubernetes', namespace: this.namespace, reason, failures: this.failures },
      'Kubernetes discovery failed; keeping the last known endpoints',
    );
    for (const set of this.subscribers.values()) for (const s of set) s.failed(reason);
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

  private isStopped(): boolean {
    return this.stopped;
  }
}

/** The informers of this process, one per (credentials, namespace), made on first use and stopped with their last subscriber. */
export class SliceInformers {
  private readonly informers = new Map<string, SliceInformer>();
  private readonly deps: InformerDeps;

  constructor(deps: InformerDeps) {
    this.deps = deps;
  }

  get(namespace: string, kubeconfig: string | undefined, idleTimeoutMs: number): SliceInformer {
    const key = JSON.stringify([kubeconfig ?? null, namespace]);
    let informer = this.informers.get(key);
    if (informer === undefined) {
      informer = new SliceInformer(namespace, kubeconfig, idleTimeoutMs, this.deps);
      this.informers.set(key, informer);
    }
    return informer;
  }

  /** Stops informers nobody subscribes to any more. */
  release(informer: SliceInformer): void {
    if (informer.subscriberCount > 0) return;
    informer.stop();
    for (const [key, i] of this.informers) if (i === informer) this.informers.delete(key);
  }
}

function describe(err: unknown): string {
  const e = err as { statusCode?: number; code?: number; message?: string };
  const code = e.statusCode ?? e.code;
  return `${code === undefined ? '' : `${code} `}${e.message ?? String(err)}`.trim();
}
