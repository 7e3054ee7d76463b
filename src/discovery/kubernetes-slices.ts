/**
 * One list + watch of the EndpointSlices of a namespace, shared by every
 * service of this meshd discovered there (Linkerd's destination controller
 * and client-go's informers work the same way): a thousand services cost one
 * watch, not a thousand. It selects slices that belong to a Service (label
 * `kubernetes.io/service-name`), keeps them by Service, and tells each
 * subscriber when its Service's slices change. The list/watch machinery
 * (resume, 410 Gone, watchdog, back-off) is kubernetes/list-watch.ts.
 */
import { ListWatch, type ListWatchDeps } from '../kubernetes/list-watch.ts';

/**
 * An EndpointSlice as meshd reads it (discovery.k8s.io/v1): the fields it uses, whether the object
 * came from the client's list (a class instance) or a watch event (plain JSON).
 */
export interface SliceObject {
  readonly metadata?: { readonly name?: string; readonly resourceVersion?: string; readonly labels?: Readonly<Record<string, string>> };
  readonly addressType: string;
  readonly ports?: readonly { readonly name?: string; readonly port?: number; readonly appProtocol?: string }[];
  readonly endpoints?: readonly {
    readonly addresses: readonly string[];
    readonly conditions?: { readonly ready?: boolean };
    readonly zone?: string;
    readonly nodeName?: string;
    readonly targetRef?: { readonly kind?: string; readonly name?: string; readonly namespace?: string };
  }[];
}

const SERVICE_LABEL = 'kubernetes.io/service-name';

/** A Service port's HTTP version, from its appProtocol (KEP-3726 names) or, failing that, its name (Istio's convention: grpc-*, h2c-*, http2-*). */
export function portProtocol(port: { readonly name?: string; readonly appProtocol?: string } | undefined): 'http1' | 'h2c' | undefined {
  if (port === undefined) return undefined;
  const app = port.appProtocol?.toLowerCase();
  if (app !== undefined) {
    if (app === 'kubernetes.io/h2c' || app === 'grpc' || app === 'h2c' || app === 'http2') return 'h2c';
    if (app === 'http' || app === 'kubernetes.io/http' || app === 'kubernetes.io/ws') return 'http1';
  }
  const name = port.name?.toLowerCase() ?? '';
  if (/^(grpc|h2c|http2)(-|$)/.test(name)) return 'h2c';
  if (/^(http|web)(-|$)/.test(name)) return 'http1';
  return undefined;
}

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

export type InformerDeps = ListWatchDeps;

export class SliceInformer {
  readonly namespace: string;
  /** Slices by Service, then by slice name. */
  private readonly byService = new Map<string, Map<string, SliceObject>>();
  private readonly subscribers = new Map<string, Set<SliceSubscriber>>();
  private readonly listWatch: ListWatch<SliceObject>;
  private starting: Promise<void> | undefined;

  constructor(namespace: string, kubeconfig: string | undefined, idleTimeoutMs: number, deps: InformerDeps) {
    this.namespace = namespace;
    this.listWatch = new ListWatch<SliceObject>(
      {
        path: `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`,
        labelSelector: SERVICE_LABEL,
        kubeconfig,
        idleTimeoutMs,
        what: `EndpointSlices of namespace ${namespace}`,
      },
      {
        listed: (items) => {
          const before = new Set(this.byService.keys());
          this.byService.clear();
          for (const slice of items) this.put(slice);
          for (const service of new Set([...before, ...this.byService.keys(), ...this.subscribers.keys()])) this.notify(service);
        },
        changed: (type, slice) => {
          const service = slice.metadata?.labels?.[SERVICE_LABEL];
          if (service === undefined) return;
          if (type === 'DELETED') this.byService.get(service)?.delete(slice.metadata?.name ?? '');
          else this.put(slice);
          this.notify(service);
        },
        failed: (reason) => {
          for (const set of this.subscribers.values()) for (const s of set) s.failed(reason);
        },
      },
      deps,
    );
  }

  /** The first list answered: an empty Service is known to be empty (or absent). */
  get synced(): boolean {
    return this.listWatch.synced;
  }

  /**
   * Keeps the namespace watched without following one Service (Kubernetes mesh mode: whether a
   * Service exists, which pods of this node back it). Resolves once the first list has answered
   * (or failed); call the returned function to let go.
   */
  async hold(): Promise<() => void> {
    this.holds++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.holds--;
    };
    this.starting ??= this.listWatch.start();
    await this.starting;
    return release;
  }

  private holds = 0;

  get subscriberCount(): number {
    let n = this.holds;
    for (const set of this.subscribers.values()) n += set.size;
    return n;
  }

  /** Subscribes to one Service; resolves once the first list has answered (or failed). */
  async subscribe(service: string, subscriber: SliceSubscriber): Promise<void> {
    let set = this.subscribers.get(service);
    if (set === undefined) this.subscribers.set(service, (set = new Set()));
    set.add(subscriber);
    this.starting ??= this.listWatch.start();
    await this.starting;
    if (this.listWatch.synced) subscriber.changed(this.slicesOf(service));
  }

  unsubscribe(service: string, subscriber: SliceSubscriber): void {
    const set = this.subscribers.get(service);
    set?.delete(subscriber);
    if (set?.size === 0) this.subscribers.delete(service);
  }

  stop(): void {
    this.listWatch.stop();
  }

  status(): InformerStatus {
    return { namespace: this.namespace, ...this.listWatch.status(), services: this.byService.size };
  }

  /** Seconds since the API server last said anything about the namespace; undefined before the first list. */
  staleSeconds(): number | undefined {
    return this.listWatch.staleSeconds();
  }

  /** The slices of one Service now (empty before the first list). */
  slicesOf(service: string): SliceObject[] {
    return [...(this.byService.get(service)?.values() ?? [])];
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
