/**
 * The supervisor of a multi-worker meshd (`workers: auto` or N > 1). It
 * carries no requests. It forks the workers (the first one resolves any port
 * 0, the others bind the same ports with SO_REUSEPORT; with sockets activated
 * by systemd it accepts on them itself and hands each connection to the next
 * worker in turn), restarts one that dies, and is the one place that
 * decides feedback for the host: every worker's samples feed its outlier
 * detectors, and each change of availability is pushed to all workers at
 * once. It also answers the admin API for the whole host and forwards
 * reloads and the drain.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { bindServer } from '../listeners/bind.ts';
import { formatSocketAddress } from '../config/address.ts';
import type { Clock, Random } from '../clock.ts';
import type { MeshConfig } from '../config/types.ts';
import { Daemon, type TrafficState } from '../daemon.ts';
import { supervisorRole, type WorkerView } from '../service/process-role.ts';
import type { Logger } from '../log.ts';
import type { TlsState } from '../tls/tls-state.ts';
import { missingFlags, runtimeEnv } from '../../bin/runtime-settings.js';
import { isWorkerMessage, WORKER_INDEX_ENV, type HandedListener, type SupervisorMessage, type WorkerMessage } from './protocol.ts';

export interface SupervisorDeps {
  readonly log: Logger;
  readonly clock: Clock;
  readonly random: Random;
  readonly tls: TlsState | undefined;
  readonly inheritedFds: ReadonlyMap<string, number>;
}

/** A worker that does not answer a query in this time is left out of the answer. */
const QUERY_TIMEOUT_MS = 2_000;
const RELOAD_TIMEOUT_MS = 15_000;
/** Restart backoff of a crashing worker: doubles from the first, capped. */
const RESTART_FIRST_MS = 500;
const RESTART_MAX_MS = 30_000;
/** A worker that stayed up this long starts its backoff afresh when it dies. */
const STABLE_AFTER_MS = 60_000;

export class Supervisor {
  readonly control: Daemon;
  private readonly pool: WorkerPool;

  constructor(config: MeshConfig, configText: string | undefined, count: number, deps: SupervisorDeps) {
    this.pool = new WorkerPool(count, configText, deps.log, deps.inheritedFds, {
      samples: (batches) => this.control.observeRemote(batches),
      snapshots: () => this.control.feedbackSnapshots(),
      traffic: () => this.control.trafficState(),
    });
    const pool = this.pool;
    this.control = new Daemon(config, {
      log: deps.log,
      clock: deps.clock,
      random: deps.random,
      tls: deps.tls,
      inheritedFds: deps.inheritedFds,
      role: supervisorRole((service, update) => pool.broadcast({ meshd: 'feedback', service, update }), pool),
      // Admin faults and canary weights: every worker gets the whole state again on each change.
      trafficChanged: () => pool.broadcast({ meshd: 'traffic', state: this.control.trafficState() }),
    });
  }

  /** Binds admin and starts discovery, then the workers; rejects if any worker cannot start. */
  async start(): Promise<void> {
    await this.control.start();
    try {
      await this.pool.start();
    } catch (err) {
      await this.pool.drain(0);
      await this.control.drain(0);
      throw err;
    }
  }

  /** A config the supervisor validated: applied here, then in every worker. */
  async reload(config: MeshConfig, text: string): Promise<void> {
    await this.control.reload(config);
    const problems = await this.pool.reload(text);
    if (problems.length > 0) throw new Error(`workers could not apply the config: ${problems.join('; ')}`);
  }

  recordReload(success: boolean, problems?: string[]): void {
    this.control.recordReload(success, problems);
  }

  async drain(timeoutMs: number): Promise<{ abandoned: number }> {
    const result = await this.pool.drain(timeoutMs);
    await this.control.drain(0);
    return result;
  }

  /** Requests in flight are counted by the workers; the supervisor has none. */
  get inFlight(): number {
    return 0;
  }
}

interface Slot {
  readonly index: number;
  child: ChildProcess | undefined;
  ready: boolean;
  startedAt: number;
  restartDelayMs: number;
}

interface PoolEvents {
  samples(batches: Extract<WorkerMessage, { meshd: 'samples' }>['batches']): void;
  snapshots(): ReturnType<Daemon['feedbackSnapshots']>;
  traffic(): TrafficState;
}

class WorkerPool implements WorkerView {
  readonly wanted: number;
  private readonly slots: Slot[];
  private configText: string | undefined;
  private readonly log: Logger;
  /** Socket-activated listeners: the supervisor accepts on them and hands connections over. */
  private readonly handed: [HandedListener, number][];
  private readonly acceptors: TcpServer[] = [];
  private nextWorker = 0;
  private readonly events: PoolEvents;
  private ports: { outbound?: number; inbound?: number } = {};
  private stopping = false;
  private nextId = 1;
  private readonly waiting = new Map<number, (message: WorkerMessage) => void>();

  constructor(count: number, configText: string | undefined, log: Logger, fds: ReadonlyMap<string, number>, events: PoolEvents) {
    this.wanted = count;
    this.configText = configText;
    this.log = log;
    this.handed = (['outbound', 'inbound'] as const).flatMap((name) => {
      const fd = fds.get(name);
      return fd === undefined ? [] : [[name, fd] as [HandedListener, number]];
    });
    this.events = events;
    this.slots = Array.from({ length: count }, (_, index) => ({ index, child: undefined, ready: false, startedAt: 0, restartDelayMs: RESTART_FIRST_MS }));
  }

  get ready(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  /** The first worker resolves the ports (port 0 in the config), then the others join them. */
  async start(): Promise<void> {
    const [first, ...rest] = this.slots;
    if (first === undefined) return;
    const bound = await this.spawn(first);
    const outbound = portOf(bound.outbound);
    const inbound = bound.inbound === undefined ? undefined : portOf(bound.inbound);
    this.ports = { ...(outbound === undefined ? {} : { outbound }), ...(inbound === undefined ? {} : { inbound }) };
    await Promise.all(rest.map((slot) => this.spawn(slot)));
    // Until now connections waited in the activated sockets' backlog; every worker is ready for them.
    for (const [listener, fd] of this.handed) await this.acceptFor(listener, fd);
  }

  /**
   * Accepts on an inherited listening socket and hands each connection to the next ready worker.
   * All workers accepting on the one shared socket would leave the spread to wake-up order (one
   * worker took 39 of 40 connections in the test); SO_REUSEPORT cannot apply to a socket that
   * systemd holds across restarts. A connection costs the supervisor one accept and one handle
   * transfer, once per connection, not per request; the bytes never pass through it.
   */
  private async acceptFor(listener: HandedListener, fd: number): Promise<void> {
    const server = createTcpServer({ pauseOnConnect: true }, (socket) => this.handOff(listener, socket));
    const address = await bindServer(server, { fd }, (err) => this.log.error({ listener, err }, 'listener error; still serving'));
    this.acceptors.push(server);
    this.log.info({ listener, address: formatSocketAddress({ host: address.address, port: address.port }), handedTo: this.wanted }, 'listening');
  }

  private handOff(listener: HandedListener, socket: Socket): void {
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[(this.nextWorker + i) % this.slots.length]!;
      if (!slot.ready || slot.child === undefined || !slot.child.connected) continue;
      this.nextWorker = (slot.index + 1) % this.slots.length;
      try {
        slot.child.send({ meshd: 'connection', listener } satisfies SupervisorMessage, socket, (err) => {
          if (err !== null) socket.destroy();
        });
      } catch {
        socket.destroy(); // the channel closed between the check and the send
      }
      return;
    }
    socket.destroy(); // no worker is up: the caller retries, as with a refused connection
  }

  broadcast(message: SupervisorMessage): void {
    for (const slot of this.slots) if (slot.ready) this.sendTo(slot.child, message);
  }

  async query(what: 'state' | 'metrics' | 'graph'): Promise<unknown[]> {
    const answers = await Promise.all(
      this.slots.filter((s) => s.ready).map((slot) => this.ask(slot, (id) => ({ meshd: 'query', id, what }), QUERY_TIMEOUT_MS)),
    );
    return answers.flatMap((a) => (a?.meshd === 'answer' ? [a.value] : []));
  }

  /** Sends the accepted config text to every worker; returns what any of them could not apply. */
  async reload(text: string): Promise<string[]> {
    this.configText = text;
    const ready = this.slots.filter((s) => s.ready);
    const answers = await Promise.all(ready.map((slot) => this.ask(slot, (id) => ({ meshd: 'reload', id, text }), RELOAD_TIMEOUT_MS)));
    const problems: string[] = [];
    answers.forEach((a, i) => {
      const worker = ready[i]?.index;
      if (a === undefined) problems.push(`worker ${worker}: no answer`);
      else if (a.meshd === 'reloaded' && !a.ok) problems.push(...(a.problems ?? []).map((p) => `worker ${worker}: ${p}`));
    });
    return problems;
  }

  /** Asks every worker to drain and waits for them to exit; those still running after the timeout are killed. */
  async drain(timeoutMs: number): Promise<{ abandoned: number }> {
    this.stopping = true;
    // New connections stay in the activated sockets' backlog for the next meshd.
    for (const server of this.acceptors) server.close();
    const running = this.slots.flatMap((s) => (s.child !== undefined && s.child.exitCode === null && s.child.signalCode === null ? [s.child] : []));
    const exits = running.map((child) => new Promise<void>((resolve) => child.once('exit', () => resolve())));
    for (const child of running) this.sendTo(child, { meshd: 'drain' });
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs + 2_000)));
    const outcome = await Promise.race([Promise.all(exits), expired]);
    clearTimeout(timer);
    let abandoned = 0;
    if (outcome === 'timeout') {
      for (const child of running) {
        if (child.exitCode !== null || child.signalCode !== null) continue;
        abandoned++;
        child.kill('SIGKILL');
      }
    }
    return { abandoned };
  }

  private ask(slot: Slot, build: (id: number) => SupervisorMessage, timeoutMs: number): Promise<WorkerMessage | undefined> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.waiting.set(id, (message) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(message);
      });
      // A worker that cannot be reached gives no answer (a reload counts that as a problem).
      if (!this.sendTo(slot.child, build(id))) {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(undefined);
      }
    });
  }

  /** Forks the worker of `slot`; resolves with its bound addresses once it serves. */
  private spawn(slot: Slot): Promise<Extract<WorkerMessage, { meshd: 'ready' }>['bound']> {
    const entry = process.argv[1] ?? '';
    // A worker cannot replace itself to gain the runtime settings (its IPC channel would close),
    // and the supervisor may lack them (socket activation): the fork gives them.
    const child = fork(entry, process.argv.slice(2), {
      execArgv: [...process.execArgv, ...missingFlags(process.execArgv, process.env)],
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      env: runtimeEnv({
        ...process.env,
        NOTIFY_SOCKET: '', // only the supervisor talks to systemd
        LISTEN_FDS: '',
        [WORKER_INDEX_ENV]: String(slot.index),
      }),
    });
    slot.child = child;
    slot.ready = false;
    slot.startedAt = Date.now();
    return new Promise((resolve, reject) => {
      let settled = false;
      let failed = false;
      child.on('message', (message: unknown) => {
        if (!isWorkerMessage(message)) return;
        switch (message.meshd) {
          case 'hello':
            this.sendTo(child, {
              meshd: 'start',
              start: {
                configText: this.configText,
                ports: this.ports,
                handoff: this.handed.map(([name]) => name),
                traffic: this.events.traffic(),
                feedback: this.events.snapshots(),
              },
            });
            return;
          case 'samples':
            this.events.samples(message.batches);
            return;
          case 'ready':
            slot.ready = true;
            for (const [service, update] of this.events.snapshots()) this.sendTo(child, { meshd: 'feedback', service, update });
            this.sendTo(child, { meshd: 'traffic', state: this.events.traffic() });
            this.log.info({ worker: slot.index, workerPid: child.pid, outbound: message.bound.outbound }, 'worker ready');
            settled = true;
            resolve(message.bound);
            return;
          case 'start_failed':
            if (!settled) reject(new Error(`worker ${slot.index} could not start: ${message.reason}`));
            settled = true;
            failed = true;
            return;
          case 'answer':
          case 'reloaded':
            this.waiting.get(message.id)?.(message);
            return;
        }
      });
      child.on('exit', (code, signal) => {
        slot.ready = false;
        if (!settled) {
          settled = true;
          reject(new Error(`worker ${slot.index} exited during start (code ${code}, signal ${signal})`));
          return;
        }
        // A worker that failed its start is retried by whoever awaited it.
        if (this.stopping || failed) return;
        if (Date.now() - slot.startedAt >= STABLE_AFTER_MS) slot.restartDelayMs = RESTART_FIRST_MS;
        this.log.error({ worker: slot.index, workerPid: child.pid, code, signal, restartInMs: slot.restartDelayMs }, 'worker exited; restarting it');
        this.restartLater(slot);
      });
    });
  }

  /**
   * Sends to a worker; false when it cannot be reached. A send that fails later (the worker died,
   * the channel broke) is logged: the worker's exit handler restarts it, a query counts no answer.
   */
  private sendTo(child: ChildProcess | undefined, message: SupervisorMessage): boolean {
    if (child === undefined || !child.connected) return false;
    try {
      child.send(message, (err) => {
        if (err !== null) this.log.warn({ workerPid: child.pid, message: message.meshd, err: err.message }, 'message to a worker not delivered');
      });
      return true;
    } catch (err) {
      this.log.warn({ workerPid: child.pid, message: message.meshd, err: (err as Error).message }, 'message to a worker not delivered');
      return false;
    }
  }

  /** Restarts a dead worker after its backoff, and again (longer) if that start fails. */
  private restartLater(slot: Slot): void {
    const delay = slot.restartDelayMs;
    slot.restartDelayMs = Math.min(RESTART_MAX_MS, slot.restartDelayMs * 2);
    setTimeout(() => {
      if (this.stopping) return;
      this.spawn(slot).catch((err: unknown) => {
        this.log.error({ worker: slot.index, err: (err as Error).message, restartInMs: slot.restartDelayMs }, 'worker restart failed');
        this.restartLater(slot);
      });
    }, delay).unref();
  }
}

/** "127.0.0.1:4140" or "[::1]:4140" → 4140; undefined for a listener the supervisor accepts on. */
function portOf(address: string): number | undefined {
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  return Number.isInteger(port) && port > 0 ? port : undefined;
}
