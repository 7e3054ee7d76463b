/**
 * Slow start (Envoy's slow_start_config): a new or returning endpoint's share
 * ramps up over `window`: factor = max(minWeight, (t / window)^(1/aggression)).
 * Balancers multiply an endpoint's weight (or divide its cost) by the factor.
 */
import type { Endpoint } from './endpoint.ts';

export interface SlowStartOptions {
  /** 0 disables slow start. */
  readonly windowMs: number;
  /** 1 is linear; larger values ramp faster at first. */
  readonly aggression: number;
  /** Share a just-added endpoint gets at once (0..1]. */
  readonly minWeight: number;
}

export const NO_SLOW_START: SlowStartOptions = { windowMs: 0, aggression: 1, minWeight: 0.1 };

export function slowStartFactor(endpoint: Endpoint, now: number, options: SlowStartOptions): number {
  // An endpoint returning from ejection ramps over its own window even when slow start is off.
  const window = endpoint.warmupMs > 0 ? endpoint.warmupMs : options.windowMs;
  if (window <= 0) return 1;
  const elapsed = now - endpoint.warmingSince;
  if (elapsed >= window) return 1;
  const ramp = Math.pow(Math.max(0, elapsed) / window, 1 / options.aggression);
  return Math.max(options.minWeight, ramp);
}
