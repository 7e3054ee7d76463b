/**
 * Outlier detection for one service: a state machine fed with per-endpoint
 * samples, health-check results and clock ticks, returning decisions
 * (eject, return, panic) with the reason and the numbers behind each. It
 * reads no clock and sets no timer: `now` comes with every event, so the
 * same script of events always yields the same decisions.
 *
 * Rules (each configurable):
 * - consecutive gateway failures (connect failure, reset, timeout, 502/503/504);
 * - consecutive server errors (any 5xx or server-side gRPC status);
 * - failure percentage over the window, with a minimum volume;
 * - success-rate outlier: below mean − k·stddev of its peers (min hosts, min volume);
 * - latency outlier: windowed percentile above factor × the peers' median (min volume,
 *   min hosts, and an absolute floor so that 0.3 ms vs 0.1 ms is not an outlier).
 * Ejection lasts base × times ejected (capped), is never applied past the max
 * ejection share, and is followed by probation (stricter thresholds); panic
 * mode makes every endpoint eligible when too few healthy ones remain.
 */
import type { OutlierConfig } from '../config/types.ts';
import { isEndpointFailure, type Outcome } from '../protocol/outcome.ts';
import { SlidingCounters } from '../util/sliding-window.ts';

export type { OutlierConfig } from '../config/types.ts';
export { DEFAULT_OUTLIER } from '../config/defaults.ts';

export type EjectReason =
  'consecutive_gateway_failures' | 'consecutive_server_errors' | 'failure_percentage' | 'success_rate' | 'latency' | 'health_check' | 'overloaded';

export type ReturnReason = 'backoff_elapsed' | 'health_check_passed';

export type FeedbackEvent =
  | { type: 'sample'; endpoint: string; outcome: Outcome; latencyMs: number; status: number; overloaded: boolean }
  | { type: 'health'; endpoint: string; healthy: boolean }
  | { type: 'endpoints'; addresses: readonly string[] }
  | { type: 'tick' };

export type Decision =
  | { type: 'eject'; endpoint: string; reason: EjectReason; detail: Record<string, number>; durationMs: number; ejections: number }
  | { type: 'eject_skipped'; endpoint: string; reason: EjectReason; detail: Record<string, number>; cause: 'max_ejection_share' }
  | { type: 'return'; endpoint: string; reason: ReturnReason; probationMs: number }
  | { type: 'panic'; on: boolean; available: number; total: number };

export type EndpointCondition = 'active' | 'probation' | 'ejected' | 'unhealthy';

interface EndpointHealth {
  condition: EndpointCondition;
  ejections: number;
  returnAt: number;
  probationUntil: number;
  healthy: boolean;
  consecutiveGateway: number;
  consecutiveServer: number;
  /** Series 0: successes, 1: failures. */
  window: SlidingCounters;
  /**
   * Recent latencies (ring), with their times, for the percentile rule. Made with the first
   * sample: 4 KiB an endpoint adds up on a host that discovers tens of thousands it never calls.
   */
  latencies: Float64Array | undefined;
  latencyTimes: Float64Array | undefined;
  latencyNext: number;
  lastReason: string | undefined;
  lastDetail: Record<string, number> | undefined;
  lastChangeAt: number;
}

const LATENCY_SAMPLES = 256;
const OK = 0;
const FAILED = 1;
const GATEWAY_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

export interface EndpointHealthView {
  condition: EndpointCondition;
  ejections: number;
  returnInMs: number | undefined;
  probationLeftMs: number | undefined;
  healthCheck: 'passing' | 'failing';
  consecutiveGatewayFailures: number;
  consecutiveServerErrors: number;
  windowRequests: number;
  windowFailureRate: number | undefined;
  windowLatencyPercentileMs: number | undefined;
  lastReason: string | undefined;
  lastDetail: Record<string, number> | undefined;
}

export class OutlierDetector {
  private config: OutlierConfig;
  private readonly endpoints = new Map<string, EndpointHealth>();
  private panicking = false;
  /** When the last sample arrived: a tick over empty windows with nobody to return decides nothing. */
  private lastSampleAt = Number.NEGATIVE_INFINITY;

  constructor(config: OutlierConfig) {
    this.config = config;
  }

  setConfig(config: OutlierConfig): void {
    this.config = config;
  }

  get panic(): boolean {
    return this.panicking;
  }

  /** Whether the balancer may use `endpoint` now (everything is usable in panic mode). */
  available(endpoint: string): boolean {
    const h = this.endpoints.get(endpoint);
    if (h === undefined || this.panicking) return true;
    return h.condition === 'active' || h.condition === 'probation';
  }

  condition(endpoint: string): EndpointCondition {
    return this.endpoints.get(endpoint)?.condition ?? 'active';
  }

  /** Feeds one event; returns the decisions it caused, in order. */
  step(event: FeedbackEvent, now: number): Decision[] {
    const decisions: Decision[] = [];
    switch (event.type) {
      case 'endpoints':
        this.setEndpoints(event.addresses, now);
        break;
      case 'sample':
        this.onSample(event, now, decisions);
        break;
      case 'health':
        this.onHealth(event.endpoint, event.healthy, now, decisions);
        break;
      case 'tick':
        // A quiet service (thousands of them on a big host) costs no window arithmetic per tick.
        if (this.settled(now)) return decisions;
        this.onTick(now, decisions);
        break;
    }
    this.updatePanic(decisions);
    return decisions;
  }

  view(endpoint: string, now: number): EndpointHealthView | undefined {
    const h = this.endpoints.get(endpoint);
    if (h === undefined) return undefined;
    const ok = h.window.sum(OK, now);
    const failed = h.window.sum(FAILED, now);
    return {
      condition: h.condition,
      ejections: h.ejections,
      returnInMs: h.condition === 'ejected' ? Math.max(0, h.returnAt - now) : undefined,
      probationLeftMs: h.condition === 'probation' ? Math.max(0, h.probationUntil - now) : undefined,
      healthCheck: h.healthy ? 'passing' : 'failing',
      consecutiveGatewayFailures: h.consecutiveGateway,
      consecutiveServerErrors: h.consecutiveServer,
      windowRequests: ok + failed,
      windowFailureRate: ok + failed === 0 ? undefined : failed / (ok + failed),
      windowLatencyPercentileMs: this.latencyPercentile(h, now),
      lastReason: h.lastReason,
      lastDetail: h.lastDetail,
    };
  }

  private setEndpoints(addresses: readonly string[], now: number): void {
    const wanted = new Set(addresses);
    for (const address of this.endpoints.keys()) if (!wanted.has(address)) this.endpoints.delete(address);
    for (const address of addresses) {
      if (this.endpoints.has(address)) continue;
      this.endpoints.set(address, {
        condition: 'active',
        ejections: 0,
        returnAt: 0,
        probationUntil: 0,
        healthy: true,
        consecutiveGateway: 0,
        consecutiveServer: 0,
        window: new SlidingCounters(this.config.windowMs, 10, 2),
        latencies: undefined,
        latencyTimes: undefined,
        latencyNext: 0,
        lastReason: undefined,
        lastDetail: undefined,
        lastChangeAt: now,
      });
    }
  }

  /**
   * Whether a tick can decide nothing: every window is empty (no sample for a whole window) and no
   * endpoint waits for its return or the end of its probation.
   */
  private settled(now: number): boolean {
    if (now - this.lastSampleAt <= this.config.windowMs) return false;
    for (const h of this.endpoints.values()) if (h.condition === 'ejected' || h.condition === 'probation') return false;
    return true;
  }

  private onSample(event: Extract<FeedbackEvent, { type: 'sample' }>, now: number, decisions: Decision[]): void {
    const h = this.endpoints.get(event.endpoint);
    if (h === undefined || event.outcome === 'client_abort') return;
    this.lastSampleAt = now;
    const failed = isEndpointFailure(event.outcome);
    h.window.add(failed ? FAILED : OK, now);
    const gateway = event.outcome === 'connect_failed' || event.outcome === 'reset' || event.outcome === 'timeout' || GATEWAY_STATUSES.has(event.status);
    h.consecutiveGateway = gateway ? h.consecutiveGateway + 1 : 0;
    h.consecutiveServer = failed ? h.consecutiveServer + 1 : 0;
    if (!failed) {
      h.latencies ??= new Float64Array(LATENCY_SAMPLES);
      h.latencyTimes ??= new Float64Array(LATENCY_SAMPLES).fill(Number.NEGATIVE_INFINITY);
      h.latencies[h.latencyNext] = event.latencyMs;
      h.latencyTimes[h.latencyNext] = now;
      h.latencyNext = (h.latencyNext + 1) % LATENCY_SAMPLES;
    }
    if (h.condition !== 'active' && h.condition !== 'probation') return;
    const strict = h.condition === 'probation' ? 2 : 1;
    if (event.overloaded) {
      this.eject(event.endpoint, h, 'overloaded', { status: event.status }, now, decisions);
    } else if (h.consecutiveGateway >= Math.max(1, Math.ceil(this.config.consecutiveGatewayFailures / strict))) {
      this.eject(event.endpoint, h, 'consecutive_gateway_failures', { consecutive: h.consecutiveGateway }, now, decisions);
    } else if (h.consecutiveServer >= Math.max(1, Math.ceil(this.config.consecutiveServerErrors / strict))) {
      this.eject(event.endpoint, h, 'consecutive_server_errors', { consecutive: h.consecutiveServer }, now, decisions);
    }
  }

  private onHealth(endpoint: string, healthy: boolean, now: number, decisions: Decision[]): void {
    const h = this.endpoints.get(endpoint);
    if (h === undefined || h.healthy === healthy) return;
    h.healthy = healthy;
    if (!healthy) {
      // A failing health check holds the endpoint out, past the ejection share: it is down.
      if (h.condition !== 'ejected') h.ejections++;
      h.condition = 'unhealthy';
      this.note(h, 'health_check', {}, now);
      decisions.push({ type: 'eject', endpoint, reason: 'health_check', detail: {}, durationMs: 0, ejections: h.ejections });
    } else if (h.condition === 'unhealthy' || h.condition === 'ejected') {
      this.restore(endpoint, h, 'health_check_passed', now, decisions);
    }
  }

  private onTick(now: number, decisions: Decision[]): void {
    const c = this.config;
    // Returns first, so that capacity freed this tick counts for the ejections below.
    for (const [address, h] of this.endpoints) {
      if (h.condition === 'ejected' && now >= h.returnAt && h.healthy) this.restore(address, h, 'backoff_elapsed', now, decisions);
      else if (h.condition === 'probation' && now >= h.probationUntil) {
        h.condition = 'active';
        h.lastChangeAt = now;
      }
    }
    const live = [...this.endpoints].filter(([, h]) => h.condition === 'active' || h.condition === 'probation');
    // Failure percentage: an absolute bar, applied per endpoint.
    for (const [address, h] of live) {
      const ok = h.window.sum(OK, now);
      const failed = h.window.sum(FAILED, now);
      const total = ok + failed;
      const threshold = h.condition === 'probation' ? c.failurePercentage.threshold / 2 : c.failurePercentage.threshold;
      if (total >= c.failurePercentage.minRequests && failed >= c.failurePercentage.minFailures && failed / total >= threshold) {
        this.eject(address, h, 'failure_percentage', { failureRate: round(failed / total), threshold, requests: total }, now, decisions);
      }
    }
    // Success-rate outliers: relative to the peers with enough volume.
    const rated = live
      .filter(([, h]) => h.condition !== 'ejected')
      .map(([address, h]) => {
        const ok = h.window.sum(OK, now);
        const total = ok + h.window.sum(FAILED, now);
        return { address, h, total, rate: total === 0 ? 1 : ok / total };
      })
      .filter((e) => e.total >= c.successRate.minRequests);
    if (rated.length >= c.successRate.minHosts) {
      const mean = rated.reduce((s, e) => s + e.rate, 0) / rated.length;
      const stdev = Math.sqrt(rated.reduce((s, e) => s + (e.rate - mean) ** 2, 0) / rated.length);
      const bar = mean - c.successRate.stdevFactor * stdev;
      for (const e of rated) {
        if (e.h.condition !== 'ejected' && e.rate < bar) {
          this.eject(
            e.address,
            e.h,
            'success_rate',
            { successRate: round(e.rate), mean: round(mean), stdev: round(stdev), threshold: round(bar) },
            now,
            decisions,
          );
        }
      }
    }
    // Latency outliers: windowed percentile against the median of the peers' percentiles.
    const timed = live
      .filter(([, h]) => h.condition !== 'ejected')
      .map(([address, h]) => ({ address, h, p: this.latencyPercentile(h, now), n: this.latencyCount(h, now) }))
      .filter((e): e is { address: string; h: EndpointHealth; p: number; n: number } => e.p !== undefined && e.n >= c.latency.minRequests);
    if (timed.length >= c.latency.minHosts) {
      for (const e of timed) {
        const peers = timed.filter((x) => x !== e).map((x) => x.p);
        const median = medianOf(peers);
        const factor = e.h.condition === 'probation' ? Math.max(1.5, c.latency.factor / 2) : c.latency.factor;
        if (e.p > median * factor && e.p - median > c.latency.floorMs) {
          this.eject(e.address, e.h, 'latency', { percentileMs: round(e.p), peerMedianMs: round(median), factor, samples: e.n }, now, decisions);
        }
      }
    }
  }

  private eject(address: string, h: EndpointHealth, reason: EjectReason, detail: Record<string, number>, now: number, decisions: Decision[]): void {
    const total = this.endpoints.size;
    let out = 0;
    for (const e of this.endpoints.values()) if (e.condition === 'ejected' || e.condition === 'unhealthy') out++;
    const allowed = Math.max(1, Math.floor(total * this.config.maxEjectionShare));
    if (total < 2 || out + 1 > allowed) {
      // Say so, once per reason: an operator must see that a bad host stayed in and why.
      if (h.lastReason !== `skipped:${reason}`) {
        h.lastReason = `skipped:${reason}`;
        h.lastDetail = { ...detail, ejected: out, allowed };
        decisions.push({ type: 'eject_skipped', endpoint: address, reason, detail: { ...detail, ejected: out, allowed }, cause: 'max_ejection_share' });
      }
      return;
    }
    h.ejections++;
    const durationMs = Math.min(this.config.maxEjectionMs, this.config.baseEjectionMs * h.ejections);
    h.condition = 'ejected';
    h.returnAt = now + durationMs;
    h.consecutiveGateway = 0;
    h.consecutiveServer = 0;
    this.note(h, reason, detail, now);
    decisions.push({ type: 'eject', endpoint: address, reason, detail, durationMs, ejections: h.ejections });
  }

  private restore(address: string, h: EndpointHealth, reason: ReturnReason, now: number, decisions: Decision[]): void {
    h.condition = 'probation';
    h.probationUntil = now + this.config.probationMs;
    // Judge it afresh: the window still holds the failures that got it ejected.
    h.window = new SlidingCounters(this.config.windowMs, 10, 2);
    h.latencyTimes?.fill(Number.NEGATIVE_INFINITY);
    h.consecutiveGateway = 0;
    h.consecutiveServer = 0;
    this.note(h, reason, {}, now);
    decisions.push({ type: 'return', endpoint: address, reason, probationMs: this.config.probationMs });
  }

  private note(h: EndpointHealth, reason: string, detail: Record<string, number>, now: number): void {
    h.lastReason = reason;
    h.lastDetail = detail;
    h.lastChangeAt = now;
  }

  private updatePanic(decisions: Decision[]): void {
    const total = this.endpoints.size;
    if (total === 0) return;
    let available = 0;
    for (const h of this.endpoints.values()) if (h.condition === 'active' || h.condition === 'probation') available++;
    const panic = available / total < this.config.panicThreshold;
    if (panic !== this.panicking) {
      this.panicking = panic;
      decisions.push({ type: 'panic', on: panic, available, total });
    }
  }

  private latencyCount(h: EndpointHealth, now: number): number {
    const since = now - this.config.windowMs;
    let n = 0;
    const times = h.latencyTimes;
    if (times === undefined) return 0;
    for (let i = 0; i < LATENCY_SAMPLES; i++) if (times[i]! >= since) n++;
    return n;
  }

  private latencyPercentile(h: EndpointHealth, now: number): number | undefined {
    const since = now - this.config.windowMs;
    const recent: number[] = [];
    const { latencies, latencyTimes } = h;
    if (latencies === undefined || latencyTimes === undefined) return undefined;
    for (let i = 0; i < LATENCY_SAMPLES; i++) if (latencyTimes[i]! >= since) recent.push(latencies[i]!);
    if (recent.length === 0) return undefined;
    recent.sort((a, b) => a - b);
    return recent[Math.min(recent.length - 1, Math.floor(this.config.latency.percentile * recent.length))];
  }
}

function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
