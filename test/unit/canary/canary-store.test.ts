import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import type { Logger } from '../../../src/log.ts';
import { CANARY_STATE_FILE, CanaryStore, parseStateFile } from '../../../src/canary/canary-store.ts';

function capture(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

describe('canary state file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-canary-store-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps each service’s progress under its definition, across a new store (a restart)', async () => {
    const stateDir = join(dir, 'a', 'state');
    const first = new CanaryStore(stateDir, capture().log);
    const progress = { phase: 'rolled_back', stepIndex: 0, weight: 0, lastReason: 'success_rate' } as const;
    first.save('users', 'def-1', progress);
    first.save('orders', 'def-2', { phase: 'progressing', stepIndex: 0, weight: 5, lastReason: 'started' });
    await first.settled();
    const file = join(stateDir, CANARY_STATE_FILE);
    // Created with the directory, readable by meshd only.
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(stateDir).mode & 0o777, 0o700);
    const again = new CanaryStore(stateDir, capture().log);
    assert.deepEqual({ ...again.saved('users', 'def-1') }, { ...progress, definition: 'def-1', savedAt: again.saved('users', 'def-1')?.['savedAt' as never] });
    assert.equal(again.saved('users', 'def-changed'), undefined, 'another definition starts over');
    assert.equal(again.saved('nobody', 'def-1'), undefined);
    // A canary taken out of the config is forgotten.
    again.retain(new Set(['orders']));
    await again.settled();
    const third = new CanaryStore(stateDir, capture().log);
    assert.equal(third.saved('users', 'def-1'), undefined);
    assert.ok(third.saved('orders', 'def-2') !== undefined);
  });

  it('writes the latest state when changes come faster than the disk, and never leaves a temporary file', async () => {
    const stateDir = join(dir, 'b');
    const store = new CanaryStore(stateDir, capture().log);
    for (const [i, weight] of [5, 25, 50, 100].entries()) store.save('users', 'd', { phase: 'progressing', stepIndex: i, weight, lastReason: 'healthy' });
    await store.settled();
    const parsed = parseStateFile(readFileSync(join(stateDir, CANARY_STATE_FILE), 'utf8'));
    assert.ok(typeof parsed !== 'string');
    assert.equal(parsed.get('users')?.weight, 100);
    const { readdirSync } = await import('node:fs');
    assert.deepEqual(readdirSync(stateDir), [CANARY_STATE_FILE]);
  });

  it('starts over on a file that is not its own, says so once, and replaces it', async () => {
    const stateDir = join(dir, 'c');
    rmSync(stateDir, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(stateDir);
    writeFileSync(join(stateDir, CANARY_STATE_FILE), '{"version": 1, "canaries": ');
    const { log, lines } = capture();
    const store = new CanaryStore(stateDir, log);
    assert.equal(store.saved('users', 'd'), undefined);
    assert.equal(lines.filter((l) => l['code'] === 'canary_state_unavailable').length, 1);
    store.save('users', 'd', { phase: 'promoted', stepIndex: 3, weight: 100, lastReason: 'operator' });
    await store.settled();
    assert.equal(new CanaryStore(stateDir, capture().log).saved('users', 'd')?.phase, 'promoted');
    for (const text of ['[]', 'null', '{"version": 2, "canaries": {}}', '{"version": 1, "canaries": []}', 'x'.repeat(2 << 20)]) {
      assert.equal(typeof parseStateFile(text), 'string', text.slice(0, 40));
    }
    // Entries without a definition are skipped, the rest kept.
    const mixed = parseStateFile('{"version": 1, "canaries": {"a": 5, "b": {"definition": "d", "phase": "paused"}}}');
    assert.ok(typeof mixed !== 'string');
    assert.deepEqual([...mixed.keys()], ['b']);
  });

  it('keeps serving from memory when the directory cannot be written, logging the problem once', async () => {
    const blocker = join(dir, 'not-a-dir');
    writeFileSync(blocker, 'a file where the state directory should be');
    const { log, lines } = capture();
    const store = new CanaryStore(join(blocker, 'state'), log);
    const warnings = (): number => lines.filter((l) => l['code'] === 'canary_state_unavailable').length;
    store.save('users', 'd', { phase: 'progressing', stepIndex: 0, weight: 5, lastReason: 'started' });
    await store.settled();
    // It could not read (ENOTDIR) and cannot write: each said once, however often it tries again.
    const first = warnings();
    assert.ok(first >= 1 && first <= 2, String(first));
    for (let i = 0; i < 3; i++) {
      store.save('users', 'd', { phase: 'progressing', stepIndex: 0, weight: 5, lastReason: 'started' });
      await store.settled();
    }
    assert.equal(warnings(), first);
    // What it holds in memory is still its answer.
    assert.equal(store.saved('users', 'd')?.weight, 5);
  });

  it('keeps nothing without a state directory', async () => {
    const store = new CanaryStore(undefined, capture().log);
    store.save('users', 'd', { phase: 'promoted', stepIndex: 3, weight: 100, lastReason: 'operator' });
    await store.settled();
    assert.equal(store.saved('users', 'd'), undefined);
  });
});
