import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { pino } from 'pino';
import { createNotifier } from '../../../src/systemd/notify.ts';

const log = pino({ level: 'silent' });

function recorder() {
  const sent: string[][] = [];
  return {
    sent,
    run: (_file: string, args: readonly string[]) => {
      sent.push([...args]);
      return Promise.resolve();
    },
  };
}

describe('systemd notifier', () => {
  it('does nothing without NOTIFY_SOCKET', async () => {
    const r = recorder();
    const n = createNotifier({}, log, r.run);
    n.ready('x');
    n.startWatchdog();
    await n.flush();
    assert.equal(n.enabled, false);
    assert.deepEqual(r.sent, []);
  });

  it('sends messages in order', async () => {
    const r = recorder();
    const n = createNotifier({ NOTIFY_SOCKET: '/run/x' }, log, r.run);
    n.ready('serving');
    n.reloading();
    n.ready('serving again');
    n.stopping('draining');
    await n.flush();
    assert.deepEqual(r.sent[0], ['READY=1', 'STATUS=serving']);
    assert.equal(r.sent[1]![0], 'RELOADING=1');
    assert.match(r.sent[1]![1]!, /^MONOTONIC_USEC=\d+$/);
    assert.deepEqual(r.sent[2], ['READY=1', 'STATUS=serving again']);
    assert.deepEqual(r.sent[3], ['STOPPING=1', 'STATUS=draining']);
  });

  it('pings the watchdog at half of WATCHDOG_USEC, only for its own pid', async () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const r = recorder();
      const n = createNotifier({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '2000000' }, log, r.run);
      n.startWatchdog();
      mock.timers.tick(999);
      await n.flush();
      assert.equal(r.sent.length, 0);
      mock.timers.tick(1);
      await n.flush();
      assert.deepEqual(r.sent, [['WATCHDOG=1']]);
      mock.timers.tick(1000);
      await n.flush();
      assert.equal(r.sent.length, 2);
      n.stop();
      const other = recorder();
      createNotifier({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '2000000', WATCHDOG_PID: String(process.pid + 1) }, log, other.run).startWatchdog();
      mock.timers.tick(5000);
      assert.equal(other.sent.length, 0);
    } finally {
      mock.timers.reset();
    }
  });

  it('keeps going when systemd-notify fails', async () => {
    const n = createNotifier({ NOTIFY_SOCKET: '/run/x' }, log, () => Promise.reject(new Error('ENOENT')));
    n.ready('x');
    await n.flush();
  });
});
