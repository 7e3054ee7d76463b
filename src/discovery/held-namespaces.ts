/**
 * Kubernetes mesh mode: the namespaces whose EndpointSlices this meshd keeps
 * watched because its pods call their Services or its peers deliver to them,
 * so that whether a Service exists, and which of its pods are ready on this
 * node, is known at once. Bounded: past the cap the least recently used
 * namespace is let go (its watch stops with its last user).
 */
import type { SliceInformer, SliceInformers } from './kubernetes-slices.ts';

/** How long a first use waits for its namespace's first list. */
const FIRST_LIST_MS = 5_000;

export interface HeldNamespacesSettings {
  readonly kubeconfig: string | undefined;
  readonly idleTimeoutMs: number;
  readonly max: number;
}

export class HeldNamespaces {
  private readonly informers: SliceInformers;
  private readonly settings: HeldNamespacesSettings;
  /** Least recently used first. */
  private readonly held = new Map<string, { informer: SliceInformer; release: Promise<() => void> }>();

  constructor(informers: SliceInformers, settings: HeldNamespacesSettings) {
    this.informers = informers;
    this.settings = settings;
  }

  /** The namespace's informer, at once when listed, else once its first list answered (or FIRST_LIST_MS passed: check `synced`). */
  hold(namespace: string): SliceInformer | Promise<SliceInformer> {
    let entry = this.held.get(namespace);
    if (entry !== undefined) this.held.delete(namespace);
    else {
      const informer = this.informers.get(namespace, this.settings.kubeconfig, this.settings.idleTimeoutMs);
      entry = { informer, release: informer.hold() };
    }
    this.held.set(namespace, entry);
    for (const oldest of this.held.keys()) {
      if (this.held.size <= this.settings.max) break;
      this.letGo(oldest);
    }
    if (entry.informer.synced) return entry.informer;
    return firstList(entry.informer, entry.release);
  }

  names(): string[] {
    return [...this.held.keys()];
  }

  close(): void {
    for (const namespace of [...this.held.keys()]) this.letGo(namespace);
  }

  private letGo(namespace: string): void {
    const entry = this.held.get(namespace);
    if (entry === undefined) return;
    this.held.delete(namespace);
    void entry.release.then((release) => {
      release();
      this.informers.release(entry.informer);
    });
  }
}

async function firstList(informer: SliceInformer, listed: Promise<unknown>): Promise<SliceInformer> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([listed, new Promise((resolve) => (timer = setTimeout(resolve, FIRST_LIST_MS)))]);
  clearTimeout(timer);
  return informer;
}
