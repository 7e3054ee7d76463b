/**
 * The one shape of a service's data path, for outbound services and local
 * (inbound) services alike, outermost first:
 *
 *   observe → respond → [mark overload] → [limit] → deadline → admission → [retry] → balance → terminal
 *
 * The bracketed layers are present when the spec asks for them: outbound
 * services limit their in-flight requests and retry; local services mark
 * their overload answers for the calling host's meshd.
 */
import type { Clock, Random } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { Admission } from './admission.ts';
import { admissionLayer } from './admission.ts';
import type { Attempts } from './attempt.ts';
import { deadlineLayer } from './deadline.ts';
import type { HashKeyReader } from '../balancer/create.ts';
import { compose, type Handler, type Layer } from './layer.ts';
import { balanceLayer, limitLayer, markOverloadLayer, observeLayer, respondLayer, type InFlightCount } from './layers.ts';
import type { ServiceRecorder } from './observer.ts';
import { retryLayer, type RetryPolicy } from './retry.ts';
import type { RetryBudget } from './retry-budget.ts';

export interface StackSpec {
  /** The service's name in logs and errors ("users", "local:web"). */
  readonly label: string;
  readonly recorder: ServiceRecorder;
  readonly log: Logger;
  readonly clock: Clock;
  readonly timeoutMs: number;
  /** The adaptive concurrency limit in force (read per request: it follows reloads); undefined: none. */
  readonly admission: () => Admission | undefined;
  readonly attempts: Attempts;
  readonly hashKey: HashKeyReader | undefined;
  readonly limit?: { readonly maxInFlight: number; readonly count: InFlightCount };
  readonly retry?: { readonly policy: RetryPolicy; readonly budget: RetryBudget; readonly random: Random };
  readonly markOverload?: boolean;
}

export function buildStack(spec: StackSpec, terminal: Handler): Handler {
  const layers: Layer[] = [observeLayer(spec.recorder, spec.clock), respondLayer(spec.label, spec.log)];
  if (spec.markOverload === true) layers.push(markOverloadLayer);
  if (spec.limit !== undefined) layers.push(limitLayer(spec.label, spec.limit.maxInFlight, spec.limit.count));
  layers.push(deadlineLayer(spec.timeoutMs, spec.clock), admissionLayer(spec.admission, spec.clock));
  if (spec.retry !== undefined) layers.push(retryLayer(spec.retry.policy, spec.retry.budget, spec.recorder, spec.clock, spec.retry.random));
  layers.push(balanceLayer(spec.attempts, spec.hashKey));
  return compose(layers, terminal);
}
