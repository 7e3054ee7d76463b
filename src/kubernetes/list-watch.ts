/**
 * List + watch of one kind of Kubernetes object, with the official client
 * (@kubernetes/client-node, loaded on first use): list, then watch from the
 * list's resourceVersion with bookmarks, resuming from the last version
 * seen. A 410 Gone (the version fell out of the server's window) lists
 * again; a watch that fails, or stays silent longer than the idle timeout,
 * is restarted with exponential back-off and full jitter; restarts are at
 * least a second apart, so a broken API server is never stormed. The owner
 * gets the whole set after each list and each change after that.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';

/** The server ends a watch after this; it is resumed from the last version. */
const WATCH_SECONDS = 300;
const MIN_RESTART_SPACING_MS = 1_000;
const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;

type Client = typeof import('@kubernetes/client-node');

/** What a listed or watched object carries for this machinery. */
export interface ObjectMeta {
  readonly metadata?: {
    readonly name?: string;
    readonly namespace?: string;
    readonly resourceVersion?: string;
    readonly labels?: Readonly<Record<string, string>>;
  };
}

export interface ListWatchTarget {
  /** The collection's path, e.g. /apis/discovery.k8s.io/v1/namespaces/shop/endpointslices or /api/v1/pods. */
  readonly path: string;
  readonly labelSelector?: string | undefined;
  readonly fieldSelector?: string | undefined;
  readonly kubeconfig: string | undefined;
  readonly idleTimeoutMs: number;
  /** For logs: what is watched. */
  readonly what: string;
}

export interface ListWatchHandler<T extends ObjectMeta> {
  /** A fresh list: every object there is now. */
  listed(items: readonly T[]): void;
  /** One change after the list. */
  changed(type: 'ADDED' | 'MODIFIED' | 'DELETED', item: T): void;
  /** The list or the watch failed; what is known stays. */
  failed(reason: string): void;
}

export interface ListWatchDeps {
  readonly log: Logger;
  readonly random: () => number;
  /** Wall-clock milliseconds. */
  readonly now: () => number;
}

export interface ListWatchStatus {
  readonly resourceVersion: string | undefined;
  readonly synced: boolean;
  readonly lists: number;
  readonly watches: number;
  readonly gone: number;
  readonly events: number;
}

export class ListWatch<T extends ObjectMeta> {
  private readonly target: ListWatchTarget;
  private readonly handler: ListWatchHandler<T>;
  private readonly deps: ListWatchDeps;
  private client: { k8s: Client; kc: KubeConfig } | undefined;
  private resourceVersion: string | undefined;
  private stopped = false;
  private failures = 0;
  private watch: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastStartAt = 0;
  private readonly counters = { lists: 0, watches: 0, gone: 0, events: 0 };
  /** When the API server last said anything (a list, an event, a bookmark). */
  private lastHeardAt: number | undefined;
  synced = false;

  constructor(target: ListWatchTarget, handler: ListWatchHandler<T>, deps: ListWatchDeps) {
    this.target = target;
    this.handler = handler;
    this.deps = deps;
  }

  /** Loads the client and lists; resolves once the first list has answered (or failed). */
  async start(): Promise<void> {
    try {
      const k8s = await import('@kubernetes/client-node');
      const kc = new k8s.KubeConfig();
      if (this.target.kubeconfig === undefined) kc.loadFromCluster();
      else kc.loadFromFile(this.target.kubeconfig);
      this.client = { k8s, kc };
    } catch (err) {
      this.fail(`cannot load Kubernetes credentials: ${(err as Error).message}`);
      return;
    }
    await this.relist();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.watch?.abort();
  }

  status(): ListWatchStatus {
    return { resourceVersion: this.resourceVersion, synced: this.synced, ...this.counters };
  }

  /** Seconds since the API server last said anything; undefined before the first list. */
  staleSeconds(): number | undefined {
    return this.lastHeardAt === undefined ? undefined : Math.max(0, (this.deps.now() - this.lastHeardAt) / 1000);
  }

  private async relist(): Promise<void> {
    const client = this.client;
    if (client === undefined || this.stopped) return;
    this.counters.lists++;
    try {
      const url = new URL(client.kc.getCurrentCluster()?.server ?? '');
      url.pathname = `${url.pathname.replace(/\/$/, '')}${this.target.path}`;
      if (this.target.labelSelector !== undefined) url.searchParams.set('labelSelector', this.target.labelSelector);
      if (this.target.fieldSelector !== undefined) url.searchParams.set('fieldSelector', this.target.fieldSelector);
      const list = (await this.get(client, url)) as { items?: T[]; metadata?: { resourceVersion?: string } };
      if (this.isStopped()) return;
      this.resourceVersion = list.metadata?.resourceVersion;
      this.synced = true;
      this.lastHeardAt = this.deps.now();
      this.failures = 0;
      this.handler.listed(list.items ?? []);
      this.startWatch();
    } catch (err) {
      if (this.isStopped()) return;
      this.fail(`list ${this.target.what}: ${describe(err)}`);
      this.later(() => void this.relist());
    }
  }

  /** One GET with the client's credentials (the generated API clients cover each kind separately). */
  private async get(client: { k8s: Client; kc: KubeConfig }, url: URL): Promise<unknown> {
    const ctx = new client.k8s.RequestContext(url.toString(), client.k8s.HttpMethod.GET);
    await client.kc.applySecurityAuthentication(ctx);
    // undici's own fetch: the dispatcher the client builds (its TLS settings) is undici's, as its Watch uses.
    const { fetch } = await import('undici');
    const dispatcher = ctx.getDispatcher();
    const response = await fetch(url, { headers: { ...ctx.getHeaders(), accept: 'application/json' }, ...(dispatcher === undefined ? {} : { dispatcher }) });
    const text = await response.text();
    if (response.status !== 200) throw Object.assign(new Error(`${response.status} ${statusMessage(text)}`), { statusCode: response.status });
    return JSON.parse(text) as unknown;
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
    Object.assign(watcher, { requestTimeoutMs: this.target.idleTimeoutMs });
    let gone = false;
    const query = {
      labelSelector: this.target.labelSelector,
      fieldSelector: this.target.fieldSelector,
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: WATCH_SECONDS,
    };
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
      const version = (object as ObjectMeta).metadata?.resourceVersion;
      if (version !== undefined) this.resourceVersion = version;
      if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') return; // BOOKMARK
      this.failures = 0;
      this.handler.changed(type, object as T);
    };
    const onDone = (err: unknown): void => {
      if (this.stopped) return;
      const status = (err as { statusCode?: number } | null)?.statusCode;
      if (gone || status === 410) {
        this.later(() => void this.relist(), true);
        return;
      }
      if (err !== null && err !== undefined) this.fail(`watch ${this.target.what}: ${describe(err)}`);
      // A watch the server ended normally (its timeout) resumes at once, unless they end too often.
      this.later(() => this.startWatch(), err === null || err === undefined);
    };
    watcher.watch(this.target.path, query, onEvent, onDone).then(
      (controller) => {
        if (this.stopped) controller.abort();
        else this.watch = controller;
      },
      (err: unknown) => onDone(err),
    );
  }

  private fail(reason: string): void {
    this.failures++;
    this.deps.log.warn(
      { source: 'kubernetes', watching: this.target.what, reason, failures: this.failures },
      'Kubernetes list/watch failed; keeping what is known',
    );
    this.handler.failed(reason);
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

function describe(err: unknown): string {
  const e = err as { statusCode?: number; code?: number; message?: string };
  const code = e.statusCode ?? e.code;
  const message = e.message ?? String(err);
  return code !== undefined && !message.startsWith(String(code)) ? `${code} ${message}` : message;
}

function statusMessage(text: string): string {
  try {
    const status = JSON.parse(text) as { message?: unknown };
    if (typeof status.message === 'string') return status.message;
  } catch {
    /* not a Status */
  }
  return text.slice(0, 200);
}
