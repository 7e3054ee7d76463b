/**
 * What a node's meshd knows of the cluster in Kubernetes mesh mode: the pods
 * on its own node (a caller's address tells its namespace and service
 * account), and the meshd pods of every node (where each node's meshd
 * listens and which identity it must present). Both are list + watch, kept
 * current; EndpointSlices come from the shared namespace informers.
 */
import type { KubernetesMeshConfig } from '../config/types.ts';
import { ListWatch, type ListWatchDeps } from './list-watch.ts';

/** A pod as meshd reads it. */
export interface PodObject {
  readonly metadata?: {
    readonly name?: string;
    readonly namespace?: string;
    readonly resourceVersion?: string;
    readonly labels?: Readonly<Record<string, string>>;
  };
  readonly spec?: { readonly nodeName?: string; readonly serviceAccountName?: string };
  readonly status?: {
    readonly podIP?: string;
    readonly hostIP?: string;
    readonly conditions?: readonly { readonly type?: string; readonly status?: string }[];
  };
}

export interface PodInfo {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly ip: string;
  readonly ready: boolean;
}

/** Another node's meshd: where to reach it and what it must present. */
export interface Peer {
  readonly node: string;
  readonly host: string;
  readonly identity: string;
}

export interface ClusterViewSettings {
  readonly nodeName: string;
  readonly kubeconfig: string | undefined;
  readonly mesh: KubernetesMeshConfig;
}

export class ClusterView {
  readonly nodeName: string;
  private readonly mesh: KubernetesMeshConfig;
  private readonly localPods = new Map<string, PodInfo>();
  private readonly peersByNode = new Map<string, Peer>();
  /** Every meshd pod's identity, ready or not: a draining meshd still sends what it started. */
  private readonly meshdPods = new Map<string, string>();
  private readonly podsWatch: ListWatch<PodObject>;
  private readonly peersWatch: ListWatch<PodObject>;
  private readonly peerListeners = new Set<() => void>();

  constructor(settings: ClusterViewSettings, deps: ListWatchDeps) {
    this.nodeName = settings.nodeName;
    this.mesh = settings.mesh;
    const idleTimeoutMs = settings.mesh.idleTimeoutMs;
    this.podsWatch = new ListWatch<PodObject>(
      {
        path: '/api/v1/pods',
        fieldSelector: `spec.nodeName=${settings.nodeName}`,
        kubeconfig: settings.kubeconfig,
        idleTimeoutMs,
        what: `pods on node ${settings.nodeName}`,
      },
      {
        listed: (items) => {
          this.localPods.clear();
          for (const pod of items) this.putPod(pod);
        },
        changed: (type, pod) => {
          if (type === 'DELETED') this.localPods.delete(podKey(pod));
          else this.putPod(pod);
        },
        failed: () => {},
      },
      deps,
    );
    this.peersWatch = new ListWatch<PodObject>(
      {
        path: `/api/v1/namespaces/${encodeURIComponent(settings.mesh.meshdNamespace)}/pods`,
        labelSelector: settings.mesh.meshdSelector,
        kubeconfig: settings.kubeconfig,
        idleTimeoutMs,
        what: 'meshd pods',
      },
      {
        listed: (items) => {
          this.peersByNode.clear();
          this.meshdPods.clear();
          for (const pod of items) this.putPeer(pod);
          this.peersChanged();
        },
        changed: (type, pod) => {
          const node = pod.spec?.nodeName;
          const name = pod.metadata?.name ?? '';
          if (type === 'DELETED') {
            this.meshdPods.delete(name);
            if (node !== undefined && this.peersByNode.get(node)?.identity === this.meshdIdentity(name)) this.peersByNode.delete(node);
          } else this.putPeer(pod);
          this.peersChanged();
        },
        failed: () => {},
      },
      deps,
    );
  }

  /** Both lists answered: meshd can tell callers and peers apart. */
  get synced(): boolean {
    return this.podsWatch.synced && this.peersWatch.synced;
  }

  async start(): Promise<void> {
    await Promise.all([this.podsWatch.start(), this.peersWatch.start()]);
  }

  stop(): void {
    this.podsWatch.stop();
    this.peersWatch.stop();
  }

  /** A pod on this node by its address (a caller). */
  podByIp(address: string | undefined): PodInfo | undefined {
    if (address === undefined) return undefined;
    // IPv4 callers of a dual-stack socket appear as ::ffff:a.b.c.d.
    return this.localPods.get(address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address);
  }

  /** The meshd of `node`, when it runs and is ready. */
  peer(node: string): Peer | undefined {
    return this.peersByNode.get(node);
  }

  /** Whether `identity` is the identity of a node's meshd (only they may name a pod and a caller). */
  isPeerIdentity(identity: string): boolean {
    const prefix = this.meshdIdentity('');
    return identity.startsWith(prefix) && this.meshdPods.has(identity.slice(prefix.length));
  }

  onPeersChanged(listener: () => void): () => void {
    this.peerListeners.add(listener);
    return () => this.peerListeners.delete(listener);
  }

  /** The identity a workload's pod is known by: its namespace and service account. */
  workloadIdentity(pod: PodInfo): string {
    return `spiffe://${this.mesh.trustDomain}/ns/${pod.namespace}/sa/${pod.serviceAccount}`;
  }

  /** The identity a meshd pod presents (cert-manager's CSI driver issues it from the pod's name). */
  meshdIdentity(podName: string): string {
    return `spiffe://${this.mesh.trustDomain}/ns/${this.mesh.meshdNamespace}/pod/${podName}`;
  }

  status(): unknown {
    return {
      node: this.nodeName,
      synced: this.synced,
      localPods: this.localPods.size,
      peers: [...this.peersByNode.values()],
      podsWatch: this.podsWatch.status(),
      peersWatch: this.peersWatch.status(),
    };
  }

  private putPod(pod: PodObject): void {
    const ip = pod.status?.podIP;
    if (ip === undefined || ip === '') return;
    this.localPods.set(ip, {
      name: pod.metadata?.name ?? '',
      namespace: pod.metadata?.namespace ?? 'default',
      serviceAccount: pod.spec?.serviceAccountName ?? 'default',
      ip,
      ready: isReady(pod),
    });
  }

  private putPeer(pod: PodObject): void {
    const node = pod.spec?.nodeName;
    const host = pod.status?.hostIP;
    const name = pod.metadata?.name;
    if (name === undefined) return;
    this.meshdPods.set(name, this.meshdIdentity(name));
    if (node === undefined || host === undefined) return;
    // A meshd that is not ready (starting, draining) is not sent to: its node's pods are reached once it is.
    if (!isReady(pod)) {
      if (this.peersByNode.get(node)?.identity === this.meshdIdentity(name)) this.peersByNode.delete(node);
      return;
    }
    this.peersByNode.set(node, { node, host, identity: this.meshdIdentity(name) });
  }

  private peersChanged(): void {
    for (const listener of this.peerListeners) listener();
  }
}

function isReady(pod: PodObject): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

function podKey(pod: PodObject): string {
  return pod.status?.podIP ?? '';
}
