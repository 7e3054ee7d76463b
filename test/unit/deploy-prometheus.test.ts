/** The shipped Prometheus alert rules are valid and fire as intended (promtool). */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));

function promtool(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile('promtool', args, { cwd: DIR, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: `${stdout}${stderr}` }),
    ),
  );
}

describe('Prometheus alert rules', () => {
  it('pass promtool check rules', async () => {
    const r = await promtool(['check', 'rules', 'meshd-alerts.yaml']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS: \d+ rules found/);
  });
  it('fire as the rule tests expect', async () => {
    const r = await promtool(['test', 'rules', 'meshd-alerts.test.yaml']);
    assert.equal(r.code, 0, r.out);
  });
});
