/**
 * Messages between the supervisor and its workers over the cluster IPC
 * channel. Workers report samples and answer queries; the supervisor pushes
 * feedback decisions, reloads and the drain. Every message carries `meshd`
 * so that other users of the channel (none today) cannot be mistaken for it.
 */
import type { AvailabilityUpdate } from '../feedback/loop.ts';
import type { Sample } from '../feedback/remote.ts';
import type { HandedListener } from '../service/process-role.ts';
import type { TrafficState } from '../daemon.ts';

export type WorkerMessage =
  /** A new worker is listening on the channel and asks for its start. */
  | { meshd: 'hello' }
  | { meshd: 'ready'; bound: { outbound: string; inbound?: string } }
  | { meshd: 'start_failed'; reason: string }
  | { meshd: 'samples'; batches: [service: string, samples: Sample[]][] }
  | { meshd: 'reloaded'; id: number; ok: boolean; problems?: string[] }
  | { meshd: 'answer'; id: number; value: unknown };

export type SupervisorMessage =
  /** The first message to a new worker: what it needs to start (an environment variable would cap its size). */
  | { meshd: 'start'; start: WorkerStart }
  | { meshd: 'feedback'; service: string; update: AvailabilityUpdate }
  /** Admin fault injections and canary weights, decided by the supervisor for every worker (whole, on each change). */
  | { meshd: 'traffic'; state: TrafficState }
  | { meshd: 'reload'; id: number; text: string }
  | { meshd: 'query'; id: number; what: 'state' | 'metrics' | 'graph' }
  | { meshd: 'drain' }
  /** Sent with a connection the supervisor accepted on a socket-activated listener. */
  | { meshd: 'connection'; listener: HandedListener };

export type { HandedListener } from '../service/process-role.ts';

/** Whether an IPC message is one of meshd's (the sender is trusted: it is our own parent or child). */
function isMeshdMessage(m: unknown): boolean {
  return typeof m === 'object' && m !== null && typeof (m as { meshd?: unknown }).meshd === 'string';
}

/** A message from a worker, as the supervisor receives it. */
export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return isMeshdMessage(m);
}

/** A message from the supervisor, as a worker receives it. */
export function isSupervisorMessage(m: unknown): m is SupervisorMessage {
  return isMeshdMessage(m);
}

/**
 * What a worker starts with, sent over IPC: the config text the supervisor runs (any size; the
 * environment is capped at 128 KiB a string), the ports the first worker resolved, and the
 * listeners the supervisor accepts for it.
 */
export interface WorkerStart {
  readonly configText: string | undefined;
  readonly ports: { outbound?: number; inbound?: number };
  readonly handoff: readonly HandedListener[];
  /** What the supervisor has decided so far, in force before the worker takes its first request. */
  readonly traffic: TrafficState;
  readonly feedback: readonly (readonly [service: string, update: AvailabilityUpdate])[];
}

/** The one environment variable of a worker: its index, which also marks the process as a worker. */
export const WORKER_INDEX_ENV = 'MESHD_WORKER_INDEX';
