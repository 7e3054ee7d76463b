import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FileWatch } from '../../../src/util/file-watch.ts';

/** Waits for the next content the watch reports, bounded in time. */
function nextContent(seen: string[], count: number, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (seen.length >= count) resolve();
      else if (Date.now() > until) reject(new Error(`saw ${seen.length} changes, expected ${count}`));
      else setTimeout(check, 20);
    };
    check();
  });
}

describe('file watch', () => {
  it('follows a Kubernetes-style atomic symlink swap (..data → new timestamped dir)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-watch-'));
    try {
      mkdirSync(join(dir, '..2026_01'));
      writeFileSync(join(dir, '..2026_01', 'cert.pem'), 'one');
      symlinkSync('..2026_01', join(dir, '..data'));
      symlinkSync('..data/cert.pem', join(dir, 'cert.pem'));
      const seen: string[] = [];
      const watch = new FileWatch(
        join(dir, 'cert.pem'),
        { settleMs: 50, pollMs: 0 },
        (text) => seen.push(text),
        () => {},
      );
      watch.prime('one');
      watch.start();
      mkdirSync(join(dir, '..2026_02'));
      writeFileSync(join(dir, '..2026_02', 'cert.pem'), 'two');
      symlinkSync('..2026_02', join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      await nextContent(seen, 1);
      assert.deepEqual(seen, ['two']);
      watch.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ignores writes that leave the content unchanged, and reports real changes once settled', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-watch-'));
    try {
      const file = join(dir, 'endpoints.yaml');
      writeFileSync(file, 'a');
      const seen: string[] = [];
      const watch = new FileWatch(
        file,
        { settleMs: 100, pollMs: 0 },
        (text) => seen.push(text),
        () => {},
      );
      watch.prime('a');
      watch.start();
      writeFileSync(file, 'a');
      writeFileSync(file, 'half');
      writeFileSync(file, 'whole');
      await nextContent(seen, 1);
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(seen, ['whole']);
      watch.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
