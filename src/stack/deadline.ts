/**
 * The exchange deadline: the service timeout, shortened by what the caller
 * says it will wait (`x-meshd-timeout-ms` from a calling meshd, or gRPC's
 * `grpc-timeout`). The remaining time is sent on to the next hop, so no hop
 * waits longer than the caller will.
 */
import { formatDuration } from '../config/units.ts';
import { MeshError } from '../errors.ts';
import type { Exchange, FieldReader } from './exchange.ts';
import type { Layer } from './layer.ts';
import type { Clock } from '../clock.ts';
import { DeadlineTimers } from './deadline-timers.ts';
import { TIMEOUT_HEADER } from '../protocol/fields.ts';
import { parseGrpcTimeout } from '../protocol/grpc.ts';

/** The time budget the caller asked for, in ms; undefined when it set none (or nonsense). */
export function callerTimeoutMs(request: FieldReader): number | undefined {
  let budget: number | undefined;
  const own = request.field(TIMEOUT_HEADER);
  if (own !== undefined && /^\d{1,9}$/.test(own)) budget = Number(own);
  const grpc = parseGrpcTimeout(request.field('grpc-timeout'));
  if (grpc !== undefined) budget = budget === undefined ? grpc : Math.min(budget, grpc);
  return budget;
}

/** Bounds the whole exchange, from arrival to the last response byte. */
export function deadlineLayer(timeoutMs: number, clock: Clock): Layer {
  const timers = new DeadlineTimers(clock, onDeadline);
  return (next) => async (ex) => {
    const asked = callerTimeoutMs(ex.head);
    const budget = asked === undefined ? timeoutMs : Math.min(timeoutMs, asked);
    ex.deadline = ex.startedAt + budget;
    timers.add(ex, budget);
    try {
      await next(ex);
    } finally {
      timers.remove(ex);
    }
  };
}

function onDeadline(ex: Exchange, budgetMs: number): void {
  ex.cancel(new MeshError('upstream_timeout', `no complete response within the ${formatDuration(budgetMs)} deadline`));
}
