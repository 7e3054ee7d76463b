/**
 * What a discovery source knows and has been through: its last good endpoint
 * list, when it last succeeded and failed and why. It holds the line under a
 * flapping source: an error or a hang keeps the last good list, and an empty
 * answer replaces a non-empty list only once it has lasted `acceptEmptyAfter`
 * (an outage of the source looks exactly like "no endpoints"). Every offer is
 * counted by its result.
 */
import type { EndpointSpec } from '../config/types.ts';

export type UpdateResult = 'changed' | 'unchanged' | 'empty_held' | 'error';

export interface SourceStatus {
  readonly endpoints: number;
  readonly lastSuccessAt: string | undefined;
  readonly lastChangeAt: string | undefined;
  readonly lastError: string | undefined;
  readonly lastErrorAt: string | undefined;
  /** Since when an empty answer has been held back, if one is. */
  readonly emptyHeldSince: string | undefined;
  /** Seconds since the last success (undefined before the first). */
  readonly staleSeconds: number | undefined;
}

export class SourceRecord {
  private current: readonly EndpointSpec[] = [];
  private readonly acceptEmptyAfterMs: number;
  private readonly now: () => number;
  private readonly counted: (result: UpdateResult) => void;
  private lastSuccessAt: number | undefined;
  private lastChangeAt: number | undefined;
  private lastError: string | undefined;
  private lastErrorAt: number | undefined;
  private emptySince: number | undefined;

  /** `now` is wall-clock milliseconds (statuses show dates); `counted` sees every result. */
  constructor(acceptEmptyAfterMs: number, now: () => number, counted: (result: UpdateResult) => void) {
    this.acceptEmptyAfterMs = acceptEmptyAfterMs;
    this.now = now;
    this.counted = counted;
  }

  get endpoints(): readonly EndpointSpec[] {
    return this.current;
  }

  /** A fresh answer from the source; true when the list in force changed. */
  offer(endpoints: readonly EndpointSpec[]): boolean {
    const now = this.now();
    this.lastSuccessAt = now;
    if (endpoints.length === 0 && this.current.length > 0) {
      this.emptySince ??= now;
      if (now - this.emptySince < this.acceptEmptyAfterMs) {
        this.counted('empty_held');
        return false;
      }
    } else this.emptySince = undefined;
    if (sameEndpoints(this.current, endpoints)) {
      this.counted('unchanged');
      return false;
    }
    this.current = endpoints;
    this.lastChangeAt = now;
    this.counted('changed');
    return true;
  }

  /** The source could not answer; the last good list stays. */
  fail(reason: string): void {
    this.lastError = reason;
    this.lastErrorAt = this.now();
    this.counted('error');
  }

  status(): SourceStatus {
    const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t).toISOString());
    return {
      endpoints: this.current.length,
      lastSuccessAt: iso(this.lastSuccessAt),
      lastChangeAt: iso(this.lastChangeAt),
      lastError: this.lastError,
      lastErrorAt: iso(this.lastErrorAt),
      emptyHeldSince: iso(this.emptySince),
      staleSeconds: this.staleSeconds(),
    };
  }

  /** Seconds since the last success; undefined before the first. */
  staleSeconds(): number | undefined {
    return this.lastSuccessAt === undefined ? undefined : Math.max(0, (this.now() - this.lastSuccessAt) / 1000);
  }
}

/** Same endpoints, in any order, with the same attributes. */
export function sameEndpoints(a: readonly EndpointSpec[], b: readonly EndpointSpec[]): boolean {
  if (a.length !== b.length) return false;
  const key = (e: EndpointSpec): string => JSON.stringify([e.address, e.zone, e.weight, e.identity, e.via, e.protocol, Object.entries(e.labels).sort()]);
  const seen = new Set(a.map(key));
  return b.every((e) => seen.has(key(e)));
}
