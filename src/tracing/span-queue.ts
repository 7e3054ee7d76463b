/**
 * A bounded export queue for spans: batches of at most `maxBatchSize` are
 * sent every `scheduleDelayMs` (sooner when a batch is full), one export in
 * flight at a time, each bounded by `exportTimeoutMs`. When the queue is
 * full, new spans are dropped and counted: memory stays bounded and the
 * data path never waits, whatever the collector does.
 */
import type { Logger } from '../log.ts';

export interface SpanQueueSettings {
  readonly maxQueueSize: number;
  readonly maxBatchSize: number;
  readonly scheduleDelayMs: number;
  readonly exportTimeoutMs: number;
}

export interface SpanQueueRecorder {
  /** `result`: exported, dropped (queue full), failed (the collector refused or did not answer). */
  spans(result: 'exported' | 'dropped' | 'failed', count: number): void;
}

/** Sends one batch; resolves with undefined on success, or why it failed. */
export type ExportBatch<T> = (batch: T[]) => Promise<string | undefined>;

export class SpanQueue<T> {
  private readonly settings: SpanQueueSettings;
  private readonly send: ExportBatch<T>;
  private readonly log: Logger;
  private readonly recorder: SpanQueueRecorder;
  private queue: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private lastFailure: string | undefined;
  /** Whether dropping has been logged since the queue last had room. */
  private droppingSaid = false;

  constructor(settings: SpanQueueSettings, send: ExportBatch<T>, log: Logger, recorder: SpanQueueRecorder) {
    this.settings = settings;
    this.send = send;
    this.log = log;
    this.recorder = recorder;
  }

  push(item: T): void {
    if (this.queue.length >= this.settings.maxQueueSize) {
      this.recorder.spans('dropped', 1);
      if (!this.droppingSaid) this.log.warn({ queued: this.queue.length, lastFailure: this.lastFailure }, 'trace export queue full; dropping spans');
      this.droppingSaid = true;
      return;
    }
    this.droppingSaid = false;
    this.queue.push(item);
    if (this.queue.length >= this.settings.maxBatchSize) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.settings.scheduleDelayMs).unref();
  }

  /** Sends everything queued now. */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.inFlight !== undefined) {
      this.kick();
      await this.inFlight;
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    await this.flush();
  }

  private kick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.inFlight !== undefined || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.settings.maxBatchSize);
    let timeout: NodeJS.Timeout | undefined;
    const bounded = Promise.race([
      this.send(batch).catch((err: unknown) => (err as Error).message),
      new Promise<string>((resolve) => (timeout = setTimeout(() => resolve('export timed out'), this.settings.exportTimeoutMs))),
    ]);
    this.inFlight = bounded.then((failure) => {
      clearTimeout(timeout);
      this.inFlight = undefined;
      if (failure === undefined) {
        this.recorder.spans('exported', batch.length);
        this.lastFailure = undefined;
      } else {
        this.recorder.spans('failed', batch.length);
        // Said once per kind of failure, not once per batch.
        if (failure !== this.lastFailure) this.log.warn({ spans: batch.length, reason: failure }, 'trace export failed; spans dropped');
        this.lastFailure = failure;
      }
      if (this.queue.length >= this.settings.maxBatchSize) this.kick();
      else if (this.queue.length > 0) this.timer ??= setTimeout(() => this.kick(), this.settings.scheduleDelayMs).unref();
    });
  }
}
