/**
 * The deadline timers of exchanges, without a Node timer per exchange. A
 * `setTimeout` + `clearTimeout` pair per request measured 5–8 % of meshd's
 * throughput (a Timeout object, async-hook bookkeeping, libuv re-arming).
 * Exchanges with the same time budget expire in the order they arrived, so
 * each budget keeps its exchanges in an intrusive doubly linked list (the
 * links live on the Exchange: nothing is allocated per request, a finished
 * exchange unlinks in O(1) and is not retained) and one timer armed for the
 * oldest; when it fires, the expired head is cut off and the timer re-armed
 * for the next.
 */
import type { Clock } from '../clock.ts';
import type { Exchange } from './exchange.ts';

/** The exchanges of one budget, oldest (earliest deadline) first. */
export interface BudgetList {
  readonly budgetMs: number;
  head: Exchange | undefined;
  tail: Exchange | undefined;
  timer: NodeJS.Timeout | undefined;
}

export class DeadlineTimers {
  private readonly lists = new Map<number, BudgetList>();
  private readonly clock: Clock;
  private readonly expired: (ex: Exchange, budgetMs: number) => void;

  constructor(clock: Clock, expired: (ex: Exchange, budgetMs: number) => void) {
    this.clock = clock;
    this.expired = expired;
  }

  /** Watches `ex` until `ex.deadline` (its arrival + `budgetMs`). */
  add(ex: Exchange, budgetMs: number): void {
    let list = this.lists.get(budgetMs);
    if (list === undefined) {
      list = { budgetMs, head: undefined, tail: undefined, timer: undefined };
      this.lists.set(budgetMs, list);
    }
    ex.deadlineList = list;
    ex.deadlinePrev = list.tail;
    ex.deadlineNext = undefined;
    if (list.tail === undefined) list.head = ex;
    else list.tail.deadlineNext = ex;
    list.tail = ex;
    if (list.timer === undefined) this.arm(list, this.clock());
  }

  /** The exchange finished: no deadline for it any more. */
  remove(ex: Exchange): void {
    const list = ex.deadlineList;
    if (list === undefined) return;
    unlink(list, ex);
    // An emptied list keeps its timer until it fires and finds nothing: re-adding is then free.
  }

  /** Exchanges waiting, for tests and state. */
  get watched(): number {
    let n = 0;
    for (const list of this.lists.values()) for (let ex = list.head; ex !== undefined; ex = ex.deadlineNext) n++;
    return n;
  }

  private arm(list: BudgetList, now: number): void {
    const head = list.head;
    if (head === undefined) {
      this.lists.delete(list.budgetMs);
      return;
    }
    list.timer = setTimeout(fire, Math.max(1, Math.ceil(head.deadline - now)), this, list);
  }

  /** The timer of `list` fired: expire every exchange whose deadline passed, then re-arm. */
  fire(list: BudgetList): void {
    list.timer = undefined;
    const now = this.clock();
    for (let ex = list.head; ex !== undefined && ex.deadline <= now; ex = list.head) {
      unlink(list, ex);
      this.expired(ex, list.budgetMs);
    }
    // An expiry callback may have added to this list and armed it already.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by add() during the callbacks above
    if (list.timer === undefined) this.arm(list, now);
  }
}

function fire(timers: DeadlineTimers, list: BudgetList): void {
  timers.fire(list);
}

function unlink(list: BudgetList, ex: Exchange): void {
  const { deadlinePrev: prev, deadlineNext: next } = ex;
  if (prev === undefined) list.head = next;
  else prev.deadlineNext = next;
  if (next === undefined) list.tail = prev;
  else next.deadlinePrev = prev;
  ex.deadlineList = undefined;
  ex.deadlinePrev = undefined;
  ex.deadlineNext = undefined;
}
