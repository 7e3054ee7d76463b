/**
 * Where canary rollouts outlive a restart: one JSON file in `stateDir`
 * (`canaries.json`), a record per service with the rollout's phase, step and
 * weight and the canary definition it belongs to. A rolled-back canary stays
 * rolled back across a restart or an upgrade of meshd, and one halfway
 * through resumes at its step; a changed definition starts over, as on a
 * reload. Written whole after every change, to a temporary file renamed over
 * the old one (a crash leaves the old or the new file, never half of one);
 * one write at a time, the latest state winning. A file that cannot be read
 * or written is logged and the canaries run from memory: persistence never
 * stops traffic.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../log.ts';
import type { CanaryProgress } from './canary-state.ts';

export const CANARY_STATE_FILE = 'canaries.json';
/** A state file larger than this is not meshd's. */
const MAX_FILE_BYTES = 1 << 20;
const FORMAT_VERSION = 1;

interface SavedCanary extends CanaryProgress {
  /** The canary's settings as the config had them (a different definition starts over). */
  readonly definition: string;
  readonly savedAt: string;
}

export class CanaryStore {
  private readonly file: string | undefined;
  private readonly log: Logger;
  private entries: Map<string, SavedCanary> | undefined;
  private writing = false;
  private dirty = false;
  private lastProblem: string | undefined;
  private idleWaiters: (() => void)[] = [];

  /** `stateDir` undefined: nothing is kept (every restart starts the rollouts over). */
  constructor(stateDir: string | undefined, log: Logger) {
    this.file = stateDir === undefined ? undefined : join(stateDir, CANARY_STATE_FILE);
    this.log = log;
  }

  /** The progress saved for `service` under this very definition, if any. */
  saved(service: string, definition: string): CanaryProgress | undefined {
    const entry = this.load().get(service);
    return entry?.definition === definition ? entry : undefined;
  }

  save(service: string, definition: string, progress: CanaryProgress): void {
    if (this.file === undefined) return;
    this.load().set(service, { ...progress, definition, savedAt: new Date().toISOString() });
    this.flush();
  }

  /** Keeps only the canaries of these services (a canary taken out of the config is forgotten). */
  retain(services: ReadonlySet<string>): void {
    if (this.file === undefined) return;
    const entries = this.load();
    let changed = false;
    for (const name of entries.keys()) {
      if (services.has(name)) continue;
      entries.delete(name);
      changed = true;
    }
    if (changed) this.flush();
  }

  /** Resolves once no write is pending (shutdown, tests). */
  settled(): Promise<void> {
    if (!this.writing) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private load(): Map<string, SavedCanary> {
    if (this.entries !== undefined) return this.entries;
    this.entries = new Map();
    if (this.file === undefined) return this.entries;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      // The first start has no file yet.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.problem(`cannot read ${this.file}: ${(err as Error).message}`);
      return this.entries;
    }
    const parsed = parseStateFile(text);
    if (typeof parsed === 'string') this.problem(`${this.file} is not a canary state file (${parsed}); canaries start over`);
    else this.entries = parsed;
    return this.entries;
  }

  private flush(): void {
    if (this.writing) {
      this.dirty = true;
      return;
    }
    const file = this.file;
    if (file === undefined) return;
    this.writing = true;
    this.dirty = false;
    const body = `${JSON.stringify({ version: FORMAT_VERSION, canaries: Object.fromEntries(this.load()) }, null, 2)}\n`;
    const temporary = `${file}.${process.pid}.tmp`;
    mkdir(dirname(file), { recursive: true, mode: 0o700 })
      .then(() => writeFile(temporary, body, { mode: 0o600 }))
      .then(() => rename(temporary, file))
      .then(
        () => {
          if (this.lastProblem !== undefined) this.log.info({ event: 'canary_state', file }, 'canary state written again');
          this.lastProblem = undefined;
        },
        (err: unknown) => this.problem(`cannot write ${file}: ${(err as Error).message}`),
      )
      .finally(() => {
        this.writing = false;
        if (this.dirty) this.flush();
        else for (const resolve of this.idleWaiters.splice(0)) resolve();
      });
  }

  /** Logged once per distinct problem: a read-only disk must not log every second. */
  private problem(message: string): void {
    if (message === this.lastProblem) return;
    this.lastProblem = message;
    this.log.warn({ event: 'canary_state', code: 'canary_state_unavailable' }, message);
  }
}

/** The entries of a state file, or why it is not one. Each entry is validated again against its policy when resumed. */
export function parseStateFile(text: string): Map<string, SavedCanary> | string {
  if (Buffer.byteLength(text) > MAX_FILE_BYTES) return `larger than ${MAX_FILE_BYTES} bytes`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof parsed !== 'object' || parsed === null) return 'not a JSON object';
  const { version, canaries } = parsed as Record<string, unknown>;
  if (version !== FORMAT_VERSION) return `version ${String(version)}, expected ${FORMAT_VERSION}`;
  if (typeof canaries !== 'object' || canaries === null || Array.isArray(canaries)) return 'no canaries object';
  const out = new Map<string, SavedCanary>();
  for (const [service, entry] of Object.entries(canaries)) {
    if (typeof entry !== 'object' || entry === null || typeof (entry as Record<string, unknown>)['definition'] !== 'string') continue;
    out.set(service, entry as SavedCanary);
  }
  return out;
}
