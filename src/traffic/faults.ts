/**
 * Fault injections in force, from the config and from the admin API. Each
 * selects attempts by service, subset (endpoint labels), endpoint, route,
 * request headers and caller identity, delays and/or aborts a share of
 * them, and expires by itself. A config fault keeps its expiry across
 * reloads while its definition is unchanged, so a reload cannot prolong an
 * experiment. Faults act after the endpoint is chosen: the endpoint's
 * statistics and the feedback loop see them like real failures, which is
 * what a chaos experiment tests; the response, the log line and the
 * metrics name the fault, so no one mistakes it for one.
 */
import type { Endpoint } from '../balancer/endpoint.ts';
import type { Clock, Random } from '../clock.ts';
import type { FaultSpec } from '../config/types.ts';
import { identityPattern } from '../identity/spiffe.ts';
import { valueTest } from '../routing/route-table.ts';
import type { RequestHead } from '../stack/exchange.ts';
import { labelsMatch } from './backends.ts';

export interface ActiveFault {
  readonly service: string;
  readonly spec: FaultSpec;
  readonly source: 'config' | 'admin';
  /** Monotonic time at which it stops acting. */
  readonly expiresAt: number;
  readonly matches: (endpoint: Endpoint, route: string | undefined, head: RequestHead, caller: string | undefined) => boolean;
  injected: { delay: number; abort: number; reset: number };
}

export interface FaultRecorder {
  faultInjected(service: string, fault: string, action: 'delay' | 'abort' | 'reset'): void;
}

/** Counts one action of a fault on the fault itself (/faults, /debug/state) and in the metrics. */
export function countInjection(plan: FaultPlan, action: 'delay' | 'abort' | 'reset', recorder: FaultRecorder): void {
  plan.fault.injected[action]++;
  recorder.faultInjected(plan.fault.service, plan.fault.spec.name, action);
}

/** What one attempt must suffer. */
export interface FaultPlan {
  readonly fault: ActiveFault;
  readonly delayMs: number;
  readonly abort: { readonly status: number | undefined; readonly reset: boolean } | undefined;
}

/** Admin faults as the supervisor hands them to its workers: each with the time it has left. */
export interface FaultTransfer {
  readonly service: string;
  readonly spec: FaultSpec;
  readonly remainingMs: number;
}

/** A fault as /debug/state and the admin API show it. */
export interface FaultView {
  service: string;
  name: string;
  source: 'config' | 'admin';
  expiresInSeconds: number;
  spec: FaultSpec;
  injected: { delay: number; abort: number; reset: number };
}

export class FaultRegistry {
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly byService = new Map<string, ActiveFault[]>();
  /** Config faults' expiries by service, name and definition: unchanged ones keep theirs across reloads. */
  private readonly configExpiry = new Map<string, number>();

  constructor(clock: Clock, random: Random) {
    this.clock = clock;
    this.random = random;
  }

  /** Replaces a service's config faults (its admin faults stay). */
  setConfigFaults(service: string, specs: readonly FaultSpec[]): void {
    const now = this.clock();
    const kept = (this.byService.get(service) ?? []).filter((f) => f.source === 'admin');
    const liveKeys = new Set<string>();
    for (const spec of specs) {
      const key = `${service}\u0000${JSON.stringify(spec)}`;
      liveKeys.add(key);
      let expiresAt = this.configExpiry.get(key);
      if (expiresAt === undefined) {
        expiresAt = now + spec.durationMs;
        this.configExpiry.set(key, expiresAt);
      }
      if (expiresAt > now) kept.push(activeFault(service, spec, 'config', expiresAt));
    }
    for (const key of this.configExpiry.keys()) if (key.startsWith(`${service}\u0000`) && !liveKeys.has(key)) this.configExpiry.delete(key);
    this.set(service, kept);
  }

  /** Adds (or replaces, by name) an admin fault; it expires after its duration. */
  add(service: string, spec: FaultSpec): FaultView {
    const fault = activeFault(service, spec, 'admin', this.clock() + spec.durationMs);
    const others = (this.byService.get(service) ?? []).filter((f) => !(f.source === 'admin' && f.spec.name === spec.name));
    this.set(service, [...others, fault]);
    return this.view(fault, this.clock());
  }

  /** Removes an admin fault by name; false when there is none. */
  remove(service: string, name: string): boolean {
    const list = this.byService.get(service) ?? [];
    const rest = list.filter((f) => !(f.source === 'admin' && f.spec.name === name));
    if (rest.length === list.length) return false;
    this.set(service, rest);
    return true;
  }

  /** Every admin fault in force, with the time it has left (for the workers). */
  adminFaults(): FaultTransfer[] {
    const now = this.clock();
    return [...this.byService.values()]
      .flat()
      .filter((f) => f.source === 'admin' && f.expiresAt > now)
      .map((f) => ({ service: f.service, spec: f.spec, remainingMs: f.expiresAt - now }));
  }

  /** Worker: the supervisor's admin faults replace this process's (config faults stay). */
  replaceAdminFaults(faults: readonly FaultTransfer[]): void {
    const now = this.clock();
    const services = new Set([...this.byService.keys(), ...faults.map((f) => f.service)]);
    for (const service of services) {
      const kept = (this.byService.get(service) ?? []).filter((f) => f.source === 'config');
      const added = faults.filter((f) => f.service === service).map((f) => activeFault(service, f.spec, 'admin', now + f.remainingMs));
      this.set(service, [...kept, ...added]);
    }
  }

  /** Whether any fault acts on `service` now (a map lookup on the hot path). */
  has(service: string): boolean {
    return this.byService.has(service);
  }

  /** The fault that acts on one attempt, with the dice already rolled; undefined for none. */
  plan(service: string, endpoint: Endpoint, route: string | undefined, head: RequestHead, caller: string | undefined): FaultPlan | undefined {
    const list = this.byService.get(service);
    if (list === undefined) return undefined;
    const now = this.clock();
    if (list.some((f) => f.expiresAt <= now)) this.expire(service, now);
    for (const fault of list) {
      if (fault.expiresAt <= now || !fault.matches(endpoint, route, head, caller)) continue;
      const { delay, abort } = fault.spec;
      const delayMs = delay !== undefined && this.roll(delay.percent) ? delay.ms : 0;
      const aborted = abort !== undefined && this.roll(abort.percent) ? { status: abort.status, reset: abort.reset } : undefined;
      if (delayMs === 0 && aborted === undefined) continue;
      return { fault, delayMs, abort: aborted };
    }
    return undefined;
  }

  list(): FaultView[] {
    const now = this.clock();
    for (const service of [...this.byService.keys()]) this.expire(service, now);
    return [...this.byService.values()].flat().map((f) => this.view(f, now));
  }

  private expire(service: string, now: number): void {
    const list = this.byService.get(service) ?? [];
    this.set(
      service,
      list.filter((f) => f.expiresAt > now),
    );
  }

  private set(service: string, list: ActiveFault[]): void {
    if (list.length === 0) this.byService.delete(service);
    else this.byService.set(service, list);
  }

  private roll(percent: number): boolean {
    return percent >= 100 || this.random() * 100 < percent;
  }

  private view(f: ActiveFault, now: number): FaultView {
    return {
      service: f.service,
      name: f.spec.name,
      source: f.source,
      expiresInSeconds: Math.max(0, Math.round((f.expiresAt - now) / 100) / 10),
      spec: f.spec,
      injected: { ...f.injected },
    };
  }
}

function activeFault(service: string, spec: FaultSpec, source: 'config' | 'admin', expiresAt: number): ActiveFault {
  const { subset, endpoint, route, headers, callers } = spec.match;
  const headerTests = headers.map((h) => ({ name: h.name, test: valueTest(h) }));
  const callerTests = callers.map(identityPattern);
  return {
    service,
    spec,
    source,
    expiresAt,
    injected: { delay: 0, abort: 0, reset: 0 },
    matches: (e, r, head, caller) =>
      (endpoint === undefined || e.address === endpoint) &&
      (subset === undefined || labelsMatch(e, subset)) &&
      (route === undefined || r === route) &&
      headerTests.every((h) => h.test(head.field(h.name))) &&
      (callerTests.length === 0 || (caller !== undefined && callerTests.some((t) => t(caller)))),
  };
}
