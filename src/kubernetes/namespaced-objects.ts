/**
 * Kubernetes mesh mode: one kind of namespaced object (HTTPRoutes, Services)
 * of the namespaces this meshd routes to, one list + watch per namespace,
 * held while a Service of the namespace runs. A change tells the subscriber
 * which namespace changed. A cluster that does not serve the kind (no
 * Gateway API CRDs) or a role that may not read it answers with an error:
 * the watch keeps retrying with back-off and the objects count as none.
 */
import type { Logger } from '../log.ts';
import { ListWatch, type ObjectMeta } from './list-watch.ts';

export interface NamespacedObjectsDeps {
  readonly log: Logger;
  readonly random: () => number;
  /** Wall-clock milliseconds. */
  readonly now: () => number;
  readonly kubeconfig: string | undefined;
  readonly idleTimeoutMs: number;
  /** The objects of `namespace` changed. */
  changed(namespace: string): void;
}

/** Which objects, and what it means for meshd when they cannot be read. */
export interface NamespacedKind {
  /** The collection's path in a namespace, e.g. /api/v1/namespaces/NS/services. */
  collection(namespace: string): string;
  /** For logs: "HTTPRoutes". */
  readonly plural: string;
  /** Logged once per failure reason, e.g. "Services route without them". */
  readonly withoutThem: string;
}

/** How long a Service's first call waits for its namespace's first list. */
const FIRST_LIST_MS = 2_000;

interface Watched<T extends ObjectMeta> {
  readonly watch: ListWatch<T>;
  readonly objects: Map<string, T>;
  readonly first: Promise<void>;
  users: number;
  lastError: string | undefined;
}

export class NamespacedObjects<T extends ObjectMeta> {
  private readonly kind: NamespacedKind;
  private readonly deps: NamespacedObjectsDeps;
  private readonly namespaces = new Map<string, Watched<T>>();

  constructor(kind: NamespacedKind, deps: NamespacedObjectsDeps) {
    this.kind = kind;
    this.deps = deps;
  }

  /** Watches `namespace` while held; resolves once its first list answered (bounded). Returns the release. */
  async hold(namespace: string): Promise<() => void> {
    let entry = this.namespaces.get(namespace);
    if (entry === undefined) entry = this.start(namespace);
    entry.users++;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([entry.first, new Promise((resolve) => (timer = setTimeout(resolve, FIRST_LIST_MS)))]);
    clearTimeout(timer);
    let released = false;
    const held = entry;
    return () => {
      if (released) return;
      released = true;
      held.users--;
      if (held.users === 0) {
        held.watch.stop();
        this.namespaces.delete(namespace);
      }
    };
  }

  /** Every object of `namespace` known now. */
  all(namespace: string): T[] {
    return [...(this.namespaces.get(namespace)?.objects.values() ?? [])];
  }

  /** One object by name; undefined when unknown (or its namespace is not held). */
  get(namespace: string, name: string): T | undefined {
    return this.namespaces.get(namespace)?.objects.get(name);
  }

  /** Why `namespace` cannot be read right now; undefined when it is listed (or not held). */
  problem(namespace: string): string | undefined {
    const entry = this.namespaces.get(namespace);
    if (entry === undefined) return undefined;
    return entry.lastError ?? (entry.watch.status().synced ? undefined : 'not listed yet');
  }

  status(): unknown {
    return Object.fromEntries(
      [...this.namespaces].map(([ns, e]) => [ns, { names: [...e.objects.keys()], users: e.users, lastError: e.lastError, ...e.watch.status() }]),
    );
  }

  close(): void {
    for (const e of this.namespaces.values()) e.watch.stop();
    this.namespaces.clear();
  }

  private start(namespace: string): Watched<T> {
    const objects = new Map<string, T>();
    let firstDone: () => void = () => {};
    const first = new Promise<void>((resolve) => (firstDone = resolve));
    const changed = (): void => this.deps.changed(namespace);
    const { plural, withoutThem } = this.kind;
    const entry: Watched<T> = {
      objects,
      first,
      users: 0,
      lastError: undefined,
      watch: new ListWatch<T>(
        {
          path: this.kind.collection(encodeURIComponent(namespace)),
          kubeconfig: this.deps.kubeconfig,
          idleTimeoutMs: this.deps.idleTimeoutMs,
          what: `${plural} of namespace ${namespace}`,
        },
        {
          listed: (items) => {
            objects.clear();
            for (const o of items) objects.set(o.metadata?.name ?? '', o);
            entry.lastError = undefined;
            firstDone();
            changed();
          },
          changed: (type, item) => {
            const name = item.metadata?.name ?? '';
            if (type === 'DELETED') objects.delete(name);
            else objects.set(name, item);
            changed();
          },
          failed: (reason) => {
            if (entry.lastError !== reason) this.deps.log.warn({ namespace, reason }, `${plural} cannot be listed; ${withoutThem}`);
            entry.lastError = reason;
            firstDone();
          },
        },
        { log: this.deps.log, random: this.deps.random, now: this.deps.now },
      ),
    };
    this.namespaces.set(namespace, entry);
    void entry.watch.start();
    return entry;
  }
}
