/**
 * Retries. What is safe to retry: a connect failure (nothing was sent) for
 * any method whose body can be resent; a configured status, a reset or a
 * per-try timeout only for idempotent methods or when the caller marks the
 * request `x-meshd-retryable: true`. Every retry is paid from the service's
 * budget, waits an exponential backoff with full jitter, must fit in the
 * deadline, and goes to another endpoint when there is one. A request body
 * streams upstream at once (a caller may wait for an answer before it sends
 * the rest); a copy of up to `bufferLimitBytes` is kept, and an attempt is
 * retried only while that copy holds every byte sent and nothing has been
 * relayed to the caller.
 */
import type { Clock, Random } from '../clock.ts';
import { ReplayableBody } from './replayable-body.ts';
import { RETRYABLE_HEADER } from '../protocol/fields.ts';
import { RetryableStatus } from '../protocol/retryable-status.ts';
import { MeshError } from '../errors.ts';
import type { Exchange } from './exchange.ts';
import type { Layer } from './layer.ts';
import type { RetryBudget } from './retry-budget.ts';

export interface RetryPolicy {
  /** Total attempts, the first included; 1 disables retries. */
  readonly attempts: number;
  readonly retryOn: ReadonlySet<number>;
  /** gRPC status codes retried when they arrive as a trailers-only response (nothing was streamed). */
  readonly retryOnGrpc: ReadonlySet<number>;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** Request bodies stream at once; a copy of up to this many bytes is kept so that they can be resent. */
  readonly bufferLimitBytes: number;
  /** 0: an attempt may use the whole deadline. */
  readonly perTryTimeoutMs: number;
}

export interface RetryRecorder {
  retried(reason: string): void;
  budgetExhausted(): void;
}

const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function retryLayer(policy: RetryPolicy, budget: RetryBudget, recorder: RetryRecorder, clock: Clock, random: Random): Layer {
  const backoff = (attempt: number): number => random() * Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** (attempt - 1));
  return (next) => async (ex) => {
    budget.recordRequest(clock());
    if (policy.attempts <= 1) return next(ex);
    const body = requestBodyOf(ex, policy.bufferLimitBytes);
    // The body streams at once; it can be sent again only while its copy holds every byte sent.
    const resendable = (): boolean => body === undefined || (body !== 'too_large' && body.replayable);
    const repeatable = IDEMPOTENT.has(ex.head.method) || ex.head.field(RETRYABLE_HEADER) === 'true';
    let pause = 0;
    // Commits to a retry: budget withdrawn and backoff chosen; false if any condition fails.
    const commit = (attempt: number): boolean => {
      if (attempt >= policy.attempts || ex.cancelled !== undefined || !resendable()) return false;
      const wait = backoff(attempt);
      if (clock() + wait >= ex.deadline) return false;
      if (!budget.tryWithdraw(clock())) {
        recorder.budgetExhausted();
        return false;
      }
      pause = wait;
      return true;
    };
    for (let attempt = 1; ; attempt++) {
      // gRPC UNAVAILABLE (and any configured code) means the call was not processed: resendable for any method.
      ex.nextAttempt(
        body === undefined || body === 'too_large' ? undefined : body.stream(),
        (status, grpc) => ((repeatable && policy.retryOn.has(status)) || (grpc !== undefined && policy.retryOnGrpc.has(grpc))) && commit(attempt),
      );
      const perTry = policy.perTryTimeoutMs > 0 ? setTimeout(onPerTryTimeout, policy.perTryTimeoutMs, ex, policy.perTryTimeoutMs) : undefined;
      let reason: string;
      try {
        await next(ex);
        return;
      } catch (err) {
        if (err instanceof RetryableStatus) {
          reason = err.reason; // already committed by the classifier
        } else {
          const code = err instanceof MeshError ? err.code : undefined;
          const retryable =
            ex.cancelled === undefined && (code === 'connect_failed' || (repeatable && (code === 'upstream_reset' || code === 'upstream_timeout')));
          if (!retryable || !commit(attempt)) throw err;
          reason = code;
        }
      } finally {
        clearTimeout(perTry);
      }
      recorder.retried(reason);
      ex.retries++;
      ex.span?.event('meshd.retry', { reason, endpoint: ex.attempt.endpoint?.address ?? 'none', attempt: attempt + 1 });
      ex.avoid = ex.attempt.endpoint;
      if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      if (ex.cancelled !== undefined) throw ex.cancelled instanceof MeshError ? ex.cancelled : new MeshError('client_closed', 'client closed the connection');
    }
  };
}

/**
 * The request body as the attempts send it: none, a replayable stream, or one declared larger
 * than the copy may hold (streamed as is, never resent).
 */
function requestBodyOf(ex: Exchange, limit: number): ReplayableBody | 'too_large' | undefined {
  if (ex.body === undefined) return undefined;
  const declared = ex.head.field('content-length');
  if (declared !== undefined && Number(declared) > limit) return 'too_large';
  return new ReplayableBody(ex.body, limit);
}

function onPerTryTimeout(ex: Exchange, ms: number): void {
  ex.cancelAttempt(new MeshError('upstream_timeout', `no response within the ${ms}ms per-try timeout`));
}
