/**
 * Kubernetes mesh mode: the HTTPRoutes (gateway.networking.k8s.io/v1) of the
 * namespaces whose Services this meshd routes to, one list + watch per
 * namespace, held while a Service of the namespace runs. A change tells
 * the subscriber which namespace changed; ./gamma.ts turns the routes into
 * a Service's rules. A cluster without the Gateway API CRDs answers 404:
 * the watch keeps retrying with back-off and Services route as without
 * HTTPRoutes.
 */
import type { Logger } from '../log.ts';
import type { HttpRouteObject } from './gamma.ts';
import { ListWatch } from './list-watch.ts';

export interface HttpRouteViewDeps {
  readonly log: Logger;
  readonly random: () => number;
  /** Wall-clock milliseconds. */
  readonly now: () => number;
  readonly kubeconfig: string | undefined;
  readonly idleTimeoutMs: number;
  /** The routes of `namespace` changed. */
  changed(namespace: string): void;
}

/** How long a Service's first call waits for its namespace's first HTTPRoute list. */
const FIRST_LIST_MS = 2_000;

interface Watched {
  readonly watch: ListWatch<HttpRouteObject & { metadata?: { name?: string; namespace?: string; resourceVersion?: string } }>;
  readonly routes: Map<string, HttpRouteObject>;
  readonly first: Promise<void>;
  users: number;
  lastError: string | undefined;
}

export class HttpRouteView {
  private readonly deps: HttpRouteViewDeps;
  private readonly namespaces = new Map<string, Watched>();

  constructor(deps: HttpRouteViewDeps) {
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

  /** Every HTTPRoute of `namespace` known now. */
  routes(namespace: string): HttpRouteObject[] {
    return [...(this.namespaces.get(namespace)?.routes.values() ?? [])];
  }

  status(): unknown {
    return Object.fromEntries(
      [...this.namespaces].map(([ns, e]) => [ns, { routes: [...e.routes.keys()], users: e.users, lastError: e.lastError, ...e.watch.status() }]),
    );
  }

  close(): void {
    for (const e of this.namespaces.values()) e.watch.stop();
    this.namespaces.clear();
  }

  private start(namespace: string): Watched {
    const routes = new Map<string, HttpRouteObject>();
    let firstDone: () => void = () => {};
    const first = new Promise<void>((resolve) => (firstDone = resolve));
    const changed = (): void => this.deps.changed(namespace);
    const entry: Watched = {
      routes,
      first,
      users: 0,
      lastError: undefined,
      watch: new ListWatch(
        {
          path: `/apis/gateway.networking.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/httproutes`,
          kubeconfig: this.deps.kubeconfig,
          idleTimeoutMs: this.deps.idleTimeoutMs,
          what: `HTTPRoutes of namespace ${namespace}`,
        },
        {
          listed: (items) => {
            routes.clear();
            for (const r of items) routes.set(r.metadata?.name ?? '', r);
            entry.lastError = undefined;
            firstDone();
            changed();
          },
          changed: (type, item) => {
            const name = item.metadata?.name ?? '';
            if (type === 'DELETED') routes.delete(name);
            else routes.set(name, item);
            changed();
          },
          failed: (reason) => {
            if (entry.lastError !== reason) this.deps.log.warn({ namespace, reason }, 'HTTPRoutes cannot be listed; Services route without them');
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
