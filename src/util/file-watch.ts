/**
 * Watches one file for changes the way config management actually changes
 * files: in-place writes, atomic renames, and Kubernetes' symlink swaps. It
 * watches the parent directory (a renamed file loses a direct watch), waits
 * for writes to settle, ignores changes that leave the content identical, and
 * polls as a safety net for events the platform drops.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, dirname } from 'node:path';

export interface FileWatchOptions {
  /** Quiet time after the last event before reading, so half-written files are skipped. */
  readonly settleMs: number;
  /** Interval of the safety-net poll; 0 disables it. */
  readonly pollMs: number;
}

export const DEFAULT_FILE_WATCH: FileWatchOptions = { settleMs: 150, pollMs: 5_000 };

export type FileContentHandler = (text: string) => void;
export type FileErrorHandler = (err: Error) => void;

export class FileWatch {
  private readonly path: string;
  private readonly options: FileWatchOptions;
  private readonly onContent: FileContentHandler;
  private readonly onError: FileErrorHandler;
  private watcher: FSWatcher | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private lastHash: string | undefined;
  private lastErrorText: string | undefined;
  private stopped = false;

  constructor(path: string, options: FileWatchOptions, onContent: FileContentHandler, onError: FileErrorHandler) {
    this.path = path;
    this.options = options;
    this.onContent = onContent;
    this.onError = onError;
  }

  /** Records the content already loaded, so an unchanged file raises no event. */
  prime(text: string): void {
    this.lastHash = hash(text);
  }

  start(): void {
    const name = basename(this.path);
    try {
      this.watcher = watch(dirname(this.path), { persistent: false }, (_event, file) => {
        // Kubernetes swaps a "..data" symlink beside the file; any entry may matter.
        if (file === null || file === name || file.startsWith('..')) this.schedule();
      });
      this.watcher.on('error', (err) => this.onError(err));
    } catch (err) {
      this.onError(err as Error);
    }
    if (this.options.pollMs > 0) {
      this.pollTimer = setInterval(() => this.schedule(), this.options.pollMs);
      this.pollTimer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    clearTimeout(this.settleTimer);
    clearInterval(this.pollTimer);
  }

  private schedule(): void {
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => void this.read(), this.options.settleMs);
    this.settleTimer.unref();
  }

  private async read(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if (this.stopped) return;
      // Report a persistent read error once, not at every poll.
      const errText = (err as Error).message;
      if (errText !== this.lastErrorText) this.onError(err as Error);
      this.lastErrorText = errText;
      return;
    }
    if (this.stopped) return;
    this.lastErrorText = undefined;
    const digest = hash(text);
    if (digest === this.lastHash) return;
    this.lastHash = digest;
    this.onContent(text);
  }
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
