/**
 * All outbound services by name. Applying a new config creates, reconfigures
 * and removes services in place, so routing never sees a half-built state.
 */
import type { MeshConfig } from '../config/types.ts';
import type { AvailabilityUpdate } from '../feedback/loop.ts';
import type { Sample } from '../feedback/remote.ts';
import { ServiceRuntime, type ServiceDeps, type ServiceState } from './runtime.ts';

export class ServiceRegistry {
  private readonly services = new Map<string, ServiceRuntime>();
  private readonly deps: ServiceDeps;

  constructor(deps: ServiceDeps) {
    this.deps = deps;
  }

  get(name: string): ServiceRuntime | undefined {
    return this.services.get(name);
  }

  async apply(config: MeshConfig): Promise<void> {
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
  }

  /** Control process: samples reported by a worker, by service. */
  observeRemote(batches: readonly [service: string, samples: Sample[]][]): void {
    for (const [service, samples] of batches) this.services.get(service)?.observeRemote(samples);
  }

  /** Control process: the current availability of every service's endpoints. */
  feedbackSnapshots(): [service: string, update: AvailabilityUpdate][] {
    const out: [string, AvailabilityUpdate][] = [];
    for (const s of this.services.values()) {
      const update = s.feedbackSnapshot();
      if (update !== undefined) out.push([s.name, update]);
    }
    return out;
  }

  async close(): Promise<void> {
    const all = [...this.services.values()];
    this.services.clear();
    await Promise.allSettled(all.map((s) => s.close()));
  }

  state(now: number): ServiceState[] {
    return [...this.services.values()].map((s) => s.state(now));
  }

  /** Per service that has discovery sources: seconds since its least recently successful one answered. */
  discoveryStaleness(): { service: string; seconds: number }[] {
    const out: { service: string; seconds: number }[] = [];
    for (const s of this.services.values()) {
      const seconds = s.discoveryStaleness();
      if (seconds !== undefined) out.push({ service: s.name, seconds });
    }
    return out;
  }

  endpointCounts(): { service: string; state: string; count: number }[] {
    const out: { service: string; state: string; count: number }[] = [];
    for (const s of this.services.values()) {
      for (const [state, count] of s.countByState()) out.push({ service: s.name, state, count });
    }
    return out;
  }
}
