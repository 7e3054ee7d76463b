/**
 * The runtime settings memory was measured with (V8's young generation
 * capped, two malloc arenas) are in force however meshd is started: the
 * pinned node directly, the machine's older node, npx (as the README shows),
 * npm start. A process started without them replaces itself (same pid) rather
 * than forking a wrapper; settings the caller gave are kept.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { startDaemon, MESHD_BIN, type StartOptions } from '../helpers/daemon.ts';
import { request } from '../helpers/http.ts';

const REPO = dirname(dirname(MESHD_BIN));
const PINNED = join(REPO, 'node_modules', 'node', 'bin', 'node');
const CONFIG = 'admin: { listen: 127.0.0.1:0 }\noutbound: { listen: 127.0.0.1:0 }\n';

interface Runtime {
  pid: number;
  runtime: { node: string; v8Flags: string[]; mallocArenaMax: string | undefined };
}

/** Whatever the environment of this test run holds, a start without the settings. */
function bareEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const unset = ['MALLOC_ARENA_MAX', 'NODE_OPTIONS', 'MESHD_RUNTIME_APPLIED'].filter((name) => !(name in extra));
  return Object.fromEntries(Object.entries({ ...process.env, ...extra }).filter(([name]) => !unset.includes(name)));
}

async function started(opts: StartOptions): Promise<{ state: Runtime; environ: string[]; spawnedPid: number | undefined }> {
  const meshd = await startDaemon(CONFIG, opts);
  try {
    const state = (await request(meshd.admin, { path: '/debug/state' })).json() as Runtime;
    const environ = readFileSync(`/proc/${state.pid}/environ`, 'latin1').split('\0');
    // npx and the older node's hand-over sit between the test and meshd: stop meshd itself.
    if (state.pid !== meshd.proc.pid) process.kill(state.pid, 'SIGTERM');
    return { state, environ, spawnedPid: meshd.proc.pid };
  } finally {
    await meshd.stop();
  }
}

describe('runtime settings', () => {
  it('are applied in place when the pinned node starts bin/meshd.js without them', async () => {
    const { state, environ, spawnedPid } = await started({ command: [PINNED, MESHD_BIN], env: bareEnv() });
    assert.deepEqual(state.runtime.v8Flags, ['--max-semi-space-size=4']);
    assert.equal(state.runtime.mallocArenaMax, '2');
    assert.ok(environ.includes('MALLOC_ARENA_MAX=2'), 'in the environment the process started with');
    assert.equal(state.pid, spawnedPid, 'the same process (execve), not a child behind a wrapper');
    assert.match(state.runtime.node, /^v24\./);
  });

  it('are applied when npx starts it, as the README shows', async () => {
    const { state, environ } = await started({ command: ['npx', '--no-install', 'meshd'], env: bareEnv() });
    assert.deepEqual(state.runtime.v8Flags, ['--max-semi-space-size=4']);
    assert.ok(environ.includes('MALLOC_ARENA_MAX=2'));
  });

  it("are applied when the machine's older node starts it (the pinned node runs the daemon)", async (t) => {
    const system = '/usr/bin/node';
    let version: string;
    try {
      version = execFileSync(system, ['--version'], { encoding: 'utf8' }).trim();
    } catch {
      t.skip('no system node on this machine');
      return;
    }
    const { state, environ } = await started({ command: [system, MESHD_BIN], env: bareEnv() });
    assert.match(state.runtime.node, /^v24\./, `system node ${version} hands over to the pinned one`);
    assert.deepEqual(state.runtime.v8Flags, ['--max-semi-space-size=4']);
    assert.ok(environ.includes('MALLOC_ARENA_MAX=2'));
  });

  it("keep the caller's own values", async () => {
    const { state, environ } = await started({
      command: [PINNED, MESHD_BIN],
      env: bareEnv({ MALLOC_ARENA_MAX: '4', NODE_OPTIONS: '--max-semi-space-size=16' }),
    });
    assert.deepEqual(state.runtime.v8Flags, [], 'the V8 option came through NODE_OPTIONS');
    assert.ok(environ.includes('NODE_OPTIONS=--max-semi-space-size=16'));
    assert.equal(state.runtime.mallocArenaMax, '4');
  });
});
