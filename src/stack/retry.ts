/**
 * Retries. What is safe to retry: a connect failure (nothing was sent) for
 * any method whose body can be resent; a configured status, a reset or a
 * per-try timeout only for idempotent methods or when the caller marks the
 * request `x-meshd-retryable: true`. Every retry is paid from the service's
 * budget, waits an exponential backoff with full jitter, must fit in the
 * deadline, and goes to another endpoint when there is one.
 */
import type { Clock, Random } from '../clock.ts';
import { MeshError } from '../errors.ts';
import type { Exchange } from './exchange.ts';
import type { Layer } from './layer.ts';
import type { RetryBudget } from './retry-budget.ts';

/** Raised by the forwarder for a response the retry layer chose to retry instead of relay. */
export class RetryableStatus extends Error {
  readonly status: number;
  constructor(status: number) {
    super(`retryable status ${status}`);
    this.status = status;
  }
}

export interface RetryPolicy {
  /** Total attempts, the first included; 1 disables retries. */
  readonly attempts: number;
  readonly retryOn: ReadonlySet<number>;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** Request bodies up to this size are buffered so that they can be resent. */
  readonly bufferLimitBytes: number;
  /** 0: an attempt may use the whole deadline. */
  readonly perTryTimeoutMs: number;
}

export interface RetryRecorder {
  retried(reason: string): void;
  budgetExhausted(): void;
}

const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
export const RETRYABLE_HEADER = 'x-meshd-retryable';

type BodyState = 'none' | 'buffered' | 'streaming';

export function retryLayer(policy: RetryPolicy, budget: RetryBudget, recorder: RetryRecorder, clock: Clock, random: Random): Layer {
  const backoff = (attempt: number): number => random() * Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** (attempt - 1));
  return (next) => async (ex) => {
    budget.recordRequest(clock());
    if (policy.attempts <= 1) return next(ex);
    const body = await prepareBody(ex, policy.bufferLimitBytes);
    const method = ex.req.method ?? 'GET';
    const safeToRepeat = body !== 'streaming' && (IDEMPOTENT.has(method) || ex.req.headers[RETRYABLE_HEADER] === 'true');
    let pause = 0;
    // Commits to a retry: budget withdrawn and backoff chosen; false if any condition fails.
    const commit = (attempt: number): boolean => {
      if (attempt >= policy.attempts || ex.cancelled !== undefined) return false;
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
      ex.attempt = attempt;
      ex.outcome = 'success';
      ex.retryOnStatus = safeToRepeat ? (status) => policy.retryOn.has(status) && commit(attempt) : undefined;
      const perTry = policy.perTryTimeoutMs > 0 ? setTimeout(onPerTryTimeout, policy.perTryTimeoutMs, ex, policy.perTryTimeoutMs) : undefined;
      let reason: string;
      try {
        await next(ex);
        return;
      } catch (err) {
        if (err instanceof RetryableStatus) {
          reason = String(err.status); // already committed by retryOnStatus
        } else {
          const code = err instanceof MeshError ? err.code : undefined;
          const retryable =
            ex.cancelled === undefined &&
            ((code === 'connect_failed' && body !== 'streaming') || (safeToRepeat && (code === 'upstream_reset' || code === 'upstream_timeout')));
          if (!retryable || !commit(attempt)) throw err;
          reason = code as string;
        }
      } finally {
        clearTimeout(perTry);
      }
      recorder.retried(reason);
      ex.avoid = ex.endpoint;
      if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      if (ex.cancelled !== undefined) throw ex.cancelled instanceof MeshError ? ex.cancelled : new MeshError('bad_request', 'client closed the connection');
    }
  };
}

function onPerTryTimeout(ex: Exchange, ms: number): void {
  ex.cancelAttempt(new MeshError('upstream_timeout', `no response within the ${ms}ms per-try timeout`));
}

/** Buffers a body of known length up to `limit` so that it can be resent; larger or chunked bodies stream. */
async function prepareBody(ex: Exchange, limit: number): Promise<BodyState> {
  const headers = ex.req.headers;
  if (headers['transfer-encoding'] !== undefined) return 'streaming';
  const length = Number(headers['content-length'] ?? 0);
  if (!(length > 0)) return 'none';
  if (length > limit) return 'streaming';
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of ex.req) chunks.push(chunk as Buffer);
  } catch (err) {
    ex.outcome = 'client_abort';
    throw new MeshError('bad_request', 'the request body ended early', { cause: err });
  }
  ex.body = Buffer.concat(chunks);
  return 'buffered';
}
