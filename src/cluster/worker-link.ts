/**
 * The worker's end of the feedback channel: samples are batched and sent to
 * the supervisor every few milliseconds (one IPC message per batch, not per
 * request); the supervisor's availability updates are handed to the
 * services that subscribed, and the latest one is kept for services that
 * subscribe later (a reload rebuilding a service's feedback loop).
 */
import type { AvailabilityUpdate } from '../feedback/loop.ts';
import type { FeedbackLink, Sample } from '../feedback/remote.ts';
import type { WorkerMessage } from './protocol.ts';

/** Samples wait at most this long: decisions stay well inside the 100 ms the feedback loop allows itself. */
export const SAMPLE_FLUSH_MS = 20;

export class WorkerLink implements FeedbackLink {
  private readonly send: (message: WorkerMessage) => void;
  private pending = new Map<string, Sample[]>();
  private timer: NodeJS.Timeout | undefined;
  private readonly subscribers = new Map<string, Set<(update: AvailabilityUpdate) => void>>();
  private readonly latest = new Map<string, AvailabilityUpdate>();

  constructor(send: (message: WorkerMessage) => void) {
    this.send = send;
  }

  report(service: string, sample: Sample): void {
    let list = this.pending.get(service);
    if (list === undefined) this.pending.set(service, (list = []));
    list.push(sample);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), SAMPLE_FLUSH_MS);
      this.timer.unref();
    }
  }

  /** Sends what is queued now (also on drain, so the last samples count). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size === 0) return;
    const batches = [...this.pending];
    this.pending = new Map();
    this.send({ meshd: 'samples', batches });
  }

  subscribe(service: string, onUpdate: (update: AvailabilityUpdate) => void): () => void {
    let set = this.subscribers.get(service);
    if (set === undefined) this.subscribers.set(service, (set = new Set()));
    set.add(onUpdate);
    const latest = this.latest.get(service);
    // Replayed as a state, not as news: endpoints that came back then are not ramped again.
    if (latest !== undefined) onUpdate({ ...latest, returned: [] });
    return () => set.delete(onUpdate);
  }

  /** An update from the supervisor. */
  deliver(service: string, update: AvailabilityUpdate): void {
    this.latest.set(service, update);
    for (const onUpdate of this.subscribers.get(service) ?? []) onUpdate(update);
  }
}
