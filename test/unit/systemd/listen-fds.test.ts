import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inheritedListeners } from '../../../src/systemd/listen-fds.ts';

describe('inherited listeners (sd_listen_fds)', () => {
  it('maps LISTEN_FDNAMES to descriptors from 3 on', () => {
    const fds = inheritedListeners({ LISTEN_FDS: '2', LISTEN_PID: '42', LISTEN_FDNAMES: 'outbound:inbound' }, 42);
    assert.deepEqual(
      [...fds],
      [
        ['outbound', 3],
        ['inbound', 4],
      ],
    );
  });
  it('ignores descriptors meant for another process, and an absent or bad count', () => {
    assert.equal(inheritedListeners({ LISTEN_FDS: '1', LISTEN_PID: '7' }, 42).size, 0);
    assert.equal(inheritedListeners({}, 42).size, 0);
    assert.equal(inheritedListeners({ LISTEN_FDS: 'x' }, 42).size, 0);
    assert.deepEqual([...inheritedListeners({ LISTEN_FDS: '1' }, 42)], [['fd3', 3]]);
  });
});
