/**
 * The recent decisions of the feedback loop and the canary (eject, return,
 * panic, limit changes, shedding, canary steps), newest last, for
 * /debug/state and the dashboard's timeline. Bounded; a decision repeated
 * within a second (one shed per refused request) is counted on the entry
 * before it instead of pushing everything else out.
 */

export interface DecisionEntry {
  /** ISO time of the first occurrence. */
  at: string;
  service: string;
  endpoint?: string;
  decision: string;
  reason: string;
  /** Occurrences folded into this entry (1 unless repeated within a second). */
  count: number;
}

const KEEP = 200;
const FOLD_MS = 1_000;

export class DecisionLog {
  private readonly entries: DecisionEntry[] = [];
  private lastAt = 0;
  private readonly now: () => number;

  /** `now`: wall-clock milliseconds. */
  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  record(service: string, decision: string, reason: string, endpoint?: string): void {
    const now = this.now();
    const last = this.entries[this.entries.length - 1];
    if (
      last !== undefined &&
      now - this.lastAt < FOLD_MS &&
      last.service === service &&
      last.decision === decision &&
      last.reason === reason &&
      last.endpoint === endpoint
    ) {
      last.count++;
      return;
    }
    this.entries.push({ at: new Date(now).toISOString(), service, ...(endpoint === undefined ? {} : { endpoint }), decision, reason, count: 1 });
    this.lastAt = now;
    if (this.entries.length > KEEP) this.entries.shift();
  }

  list(): DecisionEntry[] {
    return this.entries.map((e) => ({ ...e }));
  }
}
