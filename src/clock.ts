/**
 * Time and randomness as values, so the balancer and the feedback loop can be
 * driven by a fake clock and a seeded generator in tests.
 */

/** Milliseconds on a monotonic clock; only differences are meaningful. */
export type Clock = () => number;

export const monotonicClock: Clock = () => performance.now();

/** A uniform random number in [0, 1). */
export type Random = () => number;

/** mulberry32: a small, fast, seedable generator for deterministic tests and picks. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
