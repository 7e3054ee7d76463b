/**
 * All outbound services by name. Applying a new config creates, reconfigures
 * and removes services in place, so routing never sees a half-built state.
 * Services made on demand (Kubernetes mesh mode: one per Service called) sit
 * beside the configured ones and follow each new config through the function
 * that made theirs.
 */
import type { MeshConfig, ServiceConfig } from '../config/types.ts';
import type { AvailabilityUpdate } from '../feedback/loop.ts';
import type { Sample } from '../feedback/remote.ts';
import { ServiceRuntime, type AttemptCount, type ServiceDeps, type ServiceState } from './runtime.ts';

/** A service's config from the daemon's; undefined when it no longer has one (mesh mode turned off). */
export type ConfigFor = (config: MeshConfig) => ServiceConfig | undefined;

interface OnDemand {
  readonly runtime: ServiceRuntime;
  readonly configFor: ConfigFor;
}

export class ServiceRegistry {
  private readonly services = new Map<string, ServiceRuntime>();
  private readonly onDemand = new Map<string, OnDemand>();
  private readonly starting = new Map<string, Promise<ServiceRuntime | undefined>>();
  private readonly deps: ServiceDeps;
  private config: MeshConfig | undefined;

  constructor(deps: ServiceDeps) {
    this.deps = deps;
  }

  /** A configured service, else one made on demand. */
  get(name: string): ServiceRuntime | undefined {
    return this.services.get(name) ?? this.onDemand.get(name)?.runtime;
  }

  /**
   * The service `name`, made from `configFor` and started (its discovery's first answer, bounded)
   * if it does not run yet; concurrent callers share one start. undefined when `configFor` gives
   * no config.
   */
  ensure(name: string, configFor: ConfigFor): ServiceRuntime | Promise<ServiceRuntime | undefined> | undefined {
    const running = this.get(name);
    if (running !== undefined) return running;
    const pending = this.starting.get(name);
    if (pending !== undefined) return pending;
    const config = this.config === undefined ? undefined : configFor(this.config);
    if (config === undefined || this.config === undefined) return undefined;
    const runtime = new ServiceRuntime(config, this.config.node.zone, this.deps);
    const started = runtime.start().then(
      () => {
        this.starting.delete(name);
        this.onDemand.set(name, { runtime, configFor });
        return runtime;
      },
      (err: unknown) => {
        this.starting.delete(name);
        void runtime.close();
        throw err;
      },
    );
    this.starting.set(name, started);
    return started;
  }

  /** Stops a service made on demand (idle, or its Service is gone); requests in flight finish. */
  remove(name: string): void {
    const entry = this.onDemand.get(name);
    if (entry === undefined) return;
    this.onDemand.delete(name);
    void entry.runtime.close();
  }

  /** Applies a made-on-demand service's config again (what it is made from changed, e.g. its HTTPRoutes). */
  async refresh(name: string): Promise<void> {
    const entry = this.onDemand.get(name);
    if (entry === undefined || this.config === undefined) return;
    const next = entry.configFor(this.config);
    if (next !== undefined) await entry.runtime.reconfigure(next, this.config.node.zone);
  }

  /** Every canary decided in this process: its weight and phase. */
  canaryDecisions(): { service: string; weight: number; phase: string }[] {
    const out: { service: string; weight: number; phase: string }[] = [];
    for (const s of this.all()) {
      const decided = s.canaryDecided();
      if (decided !== undefined) out.push({ service: s.name, ...decided });
    }
    return out;
  }

  /** Names of the services made on demand. */
  onDemandNames(): string[] {
    return [...this.onDemand.keys()];
  }

  async apply(config: MeshConfig): Promise<void> {
    this.config = config;
    const starting: Promise<void>[] = [];
    const fresh = new Map<string, ServiceRuntime>();
    for (const [name, svc] of config.services) {
      const existing = this.services.get(name);
      if (existing !== undefined) {
        starting.push(existing.reconfigure(svc, config.node.zone));
      } else {
        const runtime = new ServiceRuntime(svc, config.node.zone, this.deps);
        fresh.set(name, runtime);
        starting.push(runtime.start());
      }
    }
    await Promise.all(starting);
    // New services become routable only once their discovery has run once.
    for (const [name, runtime] of fresh) this.services.set(name, runtime);
    for (const [name, runtime] of this.services) {
      if (config.services.has(name)) continue;
      this.services.delete(name);
      void runtime.close();
    }
    const following: Promise<void>[] = [];
    for (const [name, { runtime, configFor }] of this.onDemand) {
      const next = configFor(config);
      if (next === undefined || config.services.has(name)) this.remove(name);
      else following.push(runtime.reconfigure(next, config.node.zone));
    }
    await Promise.all(following);
    // A canary taken out of the config is forgotten (one put back starts over).
    this.deps.canaryStore?.retain(new Set([...config.services].filter(([, svc]) => svc.canary !== undefined).map(([name]) => name)));
  }

  /** Control process: samples reported by a worker, by service. */
  observeRemote(batches: readonly [service: string, samples: Sample[]][]): void {
    for (const [service, samples] of batches) this.get(service)?.observeRemote(samples);
  }

  /** Control process: the current availability of every service's endpoints. */
  feedbackSnapshots(): [service: string, update: AvailabilityUpdate][] {
    const out: [string, AvailabilityUpdate][] = [];
    for (const s of this.all()) {
      const update = s.feedbackSnapshot();
      if (update !== undefined) out.push([s.name, update]);
    }
    return out;
  }

  async close(): Promise<void> {
    const all = this.all();
    this.services.clear();
    this.onDemand.clear();
    await Promise.allSettled(all.map((s) => s.close()));
  }

  state(now: number): ServiceState[] {
    return this.all().map((s) => s.state(now));
  }

  /** Per service that has discovery sources: seconds since its least recently successful one answered. */
  discoveryStaleness(): { service: string; seconds: number }[] {
    const out: { service: string; seconds: number }[] = [];
    for (const s of this.all()) {
      const seconds = s.discoveryStaleness();
      if (seconds !== undefined) out.push({ service: s.name, seconds });
    }
    return out;
  }

  attemptCounts(): AttemptCount[] {
    const out: AttemptCount[] = [];
    for (const s of this.all()) s.attemptCounts(out);
    return out;
  }

  endpointCounts(): { service: string; state: string; count: number }[] {
    const out: { service: string; state: string; count: number }[] = [];
    for (const s of this.all()) {
      for (const [state, count] of s.countByState()) out.push({ service: s.name, state, count });
    }
    return out;
  }

  private all(): ServiceRuntime[] {
    return [...this.services.values(), ...[...this.onDemand.values()].map((e) => e.runtime)];
  }
}
