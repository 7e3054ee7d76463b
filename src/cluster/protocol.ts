/**
 * Messages between the supervisor and its workers over the cluster IPC
 * channel. Workers report samples and answer queries; the supervisor pushes
 * feedback decisions, reloads and the drain. Every message carries `meshd`
 * so that other users of the channel (none today) cannot be mistaken for it.
 */
import type { AvailabilityUpdate } from '../feedback/loop.ts';
import type { Sample } from '../feedback/remote.ts';

export type WorkerMessage =
  | { meshd: 'ready'; bound: { outbound: string; inbound?: string } }
  | { meshd: 'start_failed'; reason: string }
  | { meshd: 'samples'; batches: [service: string, samples: Sample[]][] }
  | { meshd: 'reloaded'; id: number; ok: boolean; problems?: string[] }
  | { meshd: 'answer'; id: number; value: unknown };

export type SupervisorMessage =
  | { meshd: 'feedback'; service: string; update: AvailabilityUpdate }
  | { meshd: 'reload'; id: number; text: string }
  | { meshd: 'query'; id: number; what: 'state' | 'metrics' }
  | { meshd: 'drain' }
  /** Sent with a connection the supervisor accepted on a socket-activated listener. */
  | { meshd: 'connection'; listener: HandedListener };

/** Listeners whose connections the supervisor accepts (socket activation) and hands to workers. */
export type HandedListener = 'outbound' | 'inbound';

/** Whether an IPC message is one of meshd's (the sender is trusted: it is our own parent or child). */
export function isMeshdMessage<T extends WorkerMessage | SupervisorMessage>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { meshd?: unknown }).meshd === 'string';
}

/** Environment of a worker: its index, the config text the supervisor runs, ports resolved by the first worker, and the listeners the supervisor accepts for it. */
export const WORKER_ENV = {
  index: 'MESHD_WORKER_INDEX',
  config: 'MESHD_WORKER_CONFIG',
  ports: 'MESHD_WORKER_PORTS',
  handoff: 'MESHD_WORKER_HANDOFF',
} as const;
