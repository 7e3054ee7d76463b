/**
 * Deadline timers without a Node timer per exchange: exchanges of one budget
 * expire in arrival order from one timer; finished ones unlink and are
 * never expired; lists of different budgets are independent.
 */
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { DeadlineTimers } from '../../../src/stack/deadline-timers.ts';
import type { Exchange } from '../../../src/stack/exchange.ts';
import { fakeExchange } from '../../helpers/fake-exchange.ts';

function exchange(startedAt: number, budget: number): Exchange {
  const { ex } = fakeExchange({}, startedAt);
  ex.deadline = startedAt + budget;
  return ex;
}

describe('deadline timers', () => {
  it('expires exchanges in arrival order from one timer per budget, skipping finished ones', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      let now = 0;
      const expired: [number, number][] = [];
      const timers = new DeadlineTimers(
        () => now,
        (ex, budget) => expired.push([ex.startedAt, budget]),
      );
      const a = exchange(0, 100);
      const b = exchange(10, 100);
      const c = exchange(20, 100);
      const fast = exchange(20, 30);
      timers.add(a, 100);
      now = 10;
      timers.add(b, 100);
      now = 20;
      timers.add(c, 100);
      timers.add(fast, 30);
      assert.equal(timers.watched, 4);
      timers.remove(b); // finished in time
      assert.equal(timers.watched, 3);

      now = 50;
      mock.timers.tick(50);
      assert.deepEqual(expired, [[20, 30]], 'the 30 ms budget has its own timer');
      now = 100;
      mock.timers.tick(50);
      assert.deepEqual(expired, [
        [20, 30],
        [0, 100],
      ]);
      now = 120;
      mock.timers.tick(20);
      assert.deepEqual(
        expired,
        [
          [20, 30],
          [0, 100],
          [20, 100],
        ],
        'b finished before its deadline and never expires',
      );
      assert.equal(timers.watched, 0);
      assert.equal(a.deadlineList, undefined, 'expired exchanges are unlinked');
    } finally {
      mock.timers.reset();
    }
  });

  it('re-arms when the head finished first, and takes new exchanges after a list emptied', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      let now = 0;
      const expired: number[] = [];
      const timers = new DeadlineTimers(
        () => now,
        (ex) => expired.push(ex.startedAt),
      );
      const first = exchange(0, 50);
      const second = exchange(40, 50);
      timers.add(first, 50);
      now = 40;
      timers.add(second, 50);
      timers.remove(first);
      now = 50;
      mock.timers.tick(50); // the timer armed for `first` fires, finds `second` not due, re-arms
      assert.deepEqual(expired, []);
      now = 90;
      mock.timers.tick(40);
      assert.deepEqual(expired, [40]);
      const third = exchange(200, 50);
      now = 200;
      timers.add(third, 50);
      now = 250;
      mock.timers.tick(50);
      assert.deepEqual(expired, [40, 200]);
    } finally {
      mock.timers.reset();
    }
  });

  it('lets an expiry callback finish other exchanges of the same list', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      let now = 0;
      const timers = new DeadlineTimers(
        () => now,
        (ex) => {
          // Cancelling an exchange runs its finally: it removes itself (and here another one too).
          timers.remove(ex);
          if (other.deadlineList !== undefined) timers.remove(other);
        },
      );
      const one = exchange(0, 10);
      const other = exchange(0, 10);
      timers.add(one, 10);
      timers.add(other, 10);
      now = 10;
      mock.timers.tick(10);
      assert.equal(timers.watched, 0);
    } finally {
      mock.timers.reset();
    }
  });
});
