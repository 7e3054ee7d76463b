/**
 * A service's adaptive concurrency limit as the data path uses it: the
 * gradient limiter behind an admission queue, with every move of the limit
 * and every shed explained (a metric each time; big moves logged at info,
 * drift at debug; sheds logged at most once a second with their count).
 * Outbound and local services use the same one.
 */
import type { Clock } from '../clock.ts';
import type { ConcurrencySettings } from '../config/types.ts';
import type { DecisionRecorder } from '../feedback/controller.ts';
import { DEFAULT_CONCURRENCY, GradientLimiter, type LimitChange } from '../feedback/concurrency.ts';
import type { Logger } from '../log.ts';
import { Admission } from '../stack/admission.ts';

export interface ConcurrencyDeps {
  readonly log: Logger;
  readonly clock: Clock;
  readonly decisions: DecisionRecorder;
  /** Publishes the current limit (gauge). */
  limit(service: string, limit: number): void;
}

/** An Admission for `settings`, or undefined when the limit is not adaptive. */
export function createAdmission(service: string, settings: ConcurrencySettings, deps: ConcurrencyDeps): Admission | undefined {
  if (!settings.adaptive) return undefined;
  const limiter = new GradientLimiter({
    ...DEFAULT_CONCURRENCY,
    initialLimit: settings.initialLimit,
    minLimit: settings.minLimit,
    maxLimit: settings.maxLimit,
    tolerance: settings.tolerance,
    windowMs: settings.windowMs,
  });
  let lastLoggedLimit = limiter.limit;
  let shedSinceLog = 0;
  let shedLoggedAt = Number.NEGATIVE_INFINITY;
  deps.limit(service, limiter.limit);
  const limitChanged = (change: LimitChange): void => {
    deps.limit(service, change.to);
    deps.decisions.decision(service, 'limit_change', change.to > change.from ? 'increase' : 'decrease');
    // Explain big moves at info; the steady drift of a working limit at debug.
    const big = Math.abs(change.to - lastLoggedLimit) >= Math.max(2, lastLoggedLimit * 0.2);
    const fields = {
      event: 'limit_change',
      service,
      from: change.from,
      to: change.to,
      shortRttMs: round(change.shortRttMs),
      baselineRttMs: round(change.baselineRttMs),
      gradient: round(change.gradient),
      maxInFlight: change.maxInFlight,
    };
    if (big) {
      lastLoggedLimit = change.to;
      deps.log.info(fields, `concurrency limit of ${service}: ${change.from} → ${change.to}`);
    } else deps.log.debug(fields, 'concurrency limit adjusted');
  };
  const shed = (reason: 'queue_full' | 'queue_timeout', limit: number, queued: number): void => {
    deps.decisions.decision(service, 'shed', reason);
    shedSinceLog++;
    // One log line per second at most under sustained overload, with the count.
    const now = deps.clock();
    if (now - shedLoggedAt >= 1_000) {
      deps.log.warn({ event: 'shed', service, reason, limit, queued, shedSinceLastLog: shedSinceLog }, `shedding load for ${service}: ${reason}`);
      shedLoggedAt = now;
      shedSinceLog = 0;
    }
  };
  return new Admission(limiter, settings.queue, deps.clock, { limitChanged, shed });
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
