/**
 * A token bucket on an injected clock: `burst` tokens at most, refilled at
 * `perSecond`. Taking a token either succeeds or says how long until one
 * returns, which becomes the caller's Retry-After.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;
  private readonly perMs: number;
  private readonly burst: number;

  constructor(perSecond: number, burst: number, now: number) {
    this.perMs = perSecond / 1000;
    this.burst = burst;
    this.tokens = burst;
    this.updatedAt = now;
  }

  /** Takes one token: 0 when granted, else the milliseconds until one is available. */
  take(now: number): number {
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.tokens) / this.perMs);
  }

  /** Tokens available now (for /debug/state). */
  available(now: number): number {
    this.refill(now);
    return this.tokens;
  }

  private refill(now: number): void {
    const elapsed = now - this.updatedAt;
    if (elapsed <= 0) return;
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.perMs);
    this.updatedAt = now;
  }
}
