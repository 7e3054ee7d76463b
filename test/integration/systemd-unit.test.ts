/**
 * The shipped systemd unit: it must pass `systemd-analyze verify` and keep
 * the exposure score low (`systemd-analyze security --offline=yes`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const UNIT = fileURLToPath(new URL('../../systemd/meshd.service', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function analyze(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile('systemd-analyze', args, { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: `${stdout}${stderr}` }),
    ),
  );
}

describe('systemd unit', () => {
  it('is Type=notify with watchdog, reload, restart, a stop timeout above the drain, and a dedicated user', () => {
    const unit = readFileSync(UNIT, 'utf8');
    for (const line of [
      'Type=notify',
      'NotifyAccess=all',
      'ExecReload=/bin/kill -HUP $MAINPID',
      'Restart=on-failure',
      'User=meshd',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'CapabilityBoundingSet=',
      // The only place it writes (stateDir), made by systemd under ProtectSystem=strict.
      'StateDirectory=meshd',
      'StateDirectoryMode=0700',
    ]) {
      assert.ok(unit.split('\n').includes(line), line);
    }
    const watchdog = /^WatchdogSec=(\d+)s$/m.exec(unit);
    assert.ok(watchdog !== null && Number(watchdog[1]) >= 10);
    const stop = /^TimeoutStopSec=(\d+)s$/m.exec(unit);
    assert.ok(stop !== null && Number(stop[1]) > 10, 'longer than the default 10 s drain');
  });

  it('passes systemd-analyze verify and rates exposure at most 2.0', async () => {
    // Point ExecStart at this checkout so that verify can check the executable exists.
    const dir = mkdtempSync(join(tmpdir(), 'meshd-unit-'));
    try {
      const unit = readFileSync(UNIT, 'utf8').replaceAll('/opt/meshd/current/', ROOT);
      const copy = join(dir, 'meshd.service');
      writeFileSync(copy, unit);
      for (const socket of ['meshd-outbound.socket', 'meshd-inbound.socket']) {
        writeFileSync(join(dir, socket), readFileSync(new URL(`../../systemd/${socket}`, import.meta.url), 'utf8'));
      }
      const verify = await analyze(['verify', copy, join(dir, 'meshd-outbound.socket'), join(dir, 'meshd-inbound.socket')]);
      assert.equal(verify.code, 0, verify.out);
      assert.doesNotMatch(verify.out, /meshd\.service/, `no complaint about the unit: ${verify.out}`);
      const security = await analyze(['security', '--offline=yes', copy]);
      const score = /Overall exposure level for meshd\.service: ([\d.]+)/.exec(security.out);
      assert.ok(score !== null, security.out.slice(-500));
      assert.ok(Number(score[1]) <= 2.0, `exposure ${score[1]}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
