/**
 * A local rate limit: one token bucket for the whole service (or route), or
 * one per caller identity. Per-caller buckets live in a bounded LRU, so a
 * flood of identities cannot grow memory; callers without a verified
 * identity share one bucket. Local means per meshd process: the limit is
 * what this host lets through, not a cluster-wide quota.
 */
import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.ts';
import type { RateLimitConfig } from '../config/types.ts';
import { MeshError } from '../errors.ts';
import type { Layer } from '../stack/layer.ts';
import { TokenBucket } from './token-bucket.ts';

/** Per-caller buckets kept at most; the least recently seen caller's bucket is forgotten first (it starts full again). */
const MAX_CALLER_BUCKETS = 10_000;
const ANONYMOUS = '';

export class RateLimiter {
  readonly config: RateLimitConfig;
  private readonly clock: Clock;
  private readonly shared: TokenBucket | undefined;
  private readonly perCaller: LRUCache<string, TokenBucket> | undefined;

  constructor(config: RateLimitConfig, clock: Clock) {
    this.config = config;
    this.clock = clock;
    if (config.per === 'service') this.shared = new TokenBucket(config.requestsPerSecond, config.burst, clock());
    else this.perCaller = new LRUCache({ max: MAX_CALLER_BUCKETS });
  }

  /** 0 when the request may go, else milliseconds until it could. */
  take(caller: string | undefined): number {
    const now = this.clock();
    if (this.shared !== undefined) return this.shared.take(now);
    const cache = this.perCaller as LRUCache<string, TokenBucket>;
    const key = caller ?? ANONYMOUS;
    let bucket = cache.get(key);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.config.requestsPerSecond, this.config.burst, now);
      cache.set(key, bucket);
    }
    return bucket.take(now);
  }

  state(): { requestsPerSecond: number; burst: number; per: string; tokens?: number; callers?: number } {
    const { requestsPerSecond, burst, per } = this.config;
    if (this.shared !== undefined) return { requestsPerSecond, burst, per, tokens: Math.floor(this.shared.available(this.clock())) };
    return { requestsPerSecond, burst, per, callers: this.perCaller?.size ?? 0 };
  }
}

/**
 * The rate limiters of one service, kept across rebuilds of its policy: a reload or a route
 * change must not hand every caller a fresh burst, so a limit whose scope and settings did not
 * change keeps its buckets; a changed one starts full.
 */
export class RateLimiters {
  private kept = new Map<string, RateLimiter>();
  private asked = new Map<string, RateLimiter>();
  private readonly clock: Clock;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  /** The limiter for `scope` ("" for the service, else the route's name) with these settings. */
  get(scope: string, config: RateLimitConfig): RateLimiter {
    const key = `${scope}\u0000${JSON.stringify(config)}`;
    const limiter = this.asked.get(key) ?? this.kept.get(key) ?? new RateLimiter(config, this.clock);
    this.asked.set(key, limiter);
    return limiter;
  }

  /** A rebuild is complete: the limiters it did not ask for are dropped. */
  settle(): void {
    this.kept = this.asked;
    this.asked = new Map();
  }
}

export interface RateLimitRecorder {
  /** `route` empty: the service's own limit. */
  rateLimited(service: string, route: string): void;
}

/**
 * Takes a token for `caller`: undefined when granted, else the 429 rate_limited (counted) with
 * Retry-After in whole seconds, at least 1. `route` undefined: the service's own limit.
 */
export function rateLimitRefusal(
  limiter: RateLimiter | undefined,
  caller: string | undefined,
  service: string,
  route: string | undefined,
  recorder: RateLimitRecorder,
): MeshError | undefined {
  const waitMs = limiter?.take(caller) ?? 0;
  if (limiter === undefined || waitMs === 0) return undefined;
  recorder.rateLimited(service, route ?? '');
  const scope = route === undefined ? `service "${service}"` : `route "${route}" of "${service}"`;
  const who = limiter.config.per === 'caller' ? ` for caller ${caller ?? '(no identity)'}` : '';
  return new MeshError('rate_limited', `${scope} is limited to ${limiter.config.requestsPerSecond} requests per second${who}`, {
    retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)),
  });
}

/** Answers 429 rate_limited with Retry-After when the bucket is empty. */
export function rateLimitLayer(limiter: RateLimiter, service: string, route: string | undefined, recorder: RateLimitRecorder): Layer {
  return (next) => (ex) => {
    const refused = rateLimitRefusal(limiter, ex.caller, service, route, recorder);
    return refused === undefined ? next(ex) : Promise.reject(refused);
  };
}
