/**
 * `meshd run` inside a worker of a multi-worker meshd: the data path only.
 * It runs the config text the supervisor runs (so every worker serves the
 * same config), binds the shared ports, reports feedback samples, obeys the
 * supervisor's decisions, reloads and drains when told, and exits when the
 * supervisor is gone.
 */
import { readFile } from 'node:fs/promises';
import { monotonicClock } from '../clock.ts';
import { defaultConfig, loadConfigFileWithText } from '../config/load.ts';
import type { MeshConfig } from '../config/types.ts';
import { Daemon } from '../daemon.ts';
import { ConfigError } from '../errors.ts';
import { createLogger, effectiveLevel, exitOnUncaughtErrors } from '../log.ts';
import { TlsState } from '../tls/tls-state.ts';
import { Socket } from 'node:net';
import { isSupervisorMessage, WORKER_INDEX_ENV, type WorkerMessage, type WorkerStart } from './protocol.ts';
import { WorkerLink } from './worker-link.ts';
import { workerRole } from '../service/process-role.ts';

export async function runWorker(configPath: string | undefined): Promise<number> {
  const env = process.env;
  const index = Number(env[WORKER_INDEX_ENV] ?? '0');
  const send = (message: WorkerMessage): void => {
    if (!process.connected) return;
    try {
      process.send?.(message, undefined, undefined, (err: Error | null) => {
        if (err !== null) process.stderr.write(`meshd worker ${index}: message ${message.meshd} to the supervisor not delivered: ${err.message}\n`);
      });
    } catch {
      /* the channel closed: the 'disconnect' handler drains this worker */
    }
  };
  const start = await startMessage(send);
  if (start === undefined) return 1;
  // The supervisor's accepted text, so that a file edited since is not picked up by one worker alone.
  const text = start.configText;
  const readText = text === undefined ? (path: string) => readFile(path, 'utf8') : () => Promise.resolve(text);
  let config: MeshConfig;
  try {
    config = configPath === undefined ? defaultConfig() : (await loadConfigFileWithText(configPath, readText)).config;
  } catch (err) {
    send({ meshd: 'start_failed', reason: err instanceof ConfigError ? `${err.file} is invalid` : String(err) });
    return 1;
  }
  const log = createLogger(effectiveLevel(config.log.level, env)).child({ worker: index });
  exitOnUncaughtErrors(log, 'the supervisor restarts this worker');

  let tls: TlsState | undefined;
  if (config.tls !== undefined) {
    try {
      tls = await TlsState.load(config.tls, log);
    } catch (err) {
      send({ meshd: 'start_failed', reason: `the TLS material is unusable: ${(err as Error).message}` });
      return 1;
    }
    tls.start();
  }
  const link = new WorkerLink(send);
  // Ejections decided before this worker started are in force for its first request (services subscribe to the latest).
  for (const [service, update] of start.feedback) link.deliver(service, update);
  const ports = start.ports;
  const handoff = new Set(start.handoff);
  const daemon = new Daemon(config, {
    log,
    clock: monotonicClock,
    random: Math.random,
    tls,
    role: workerRole(link, ports, handoff),
    initialTraffic: start.traffic,
  });
  try {
    const bound = await daemon.start();
    send({ meshd: 'ready', bound: { outbound: bound.outbound, ...(bound.inbound === undefined ? {} : { inbound: bound.inbound }) } });
  } catch (err) {
    log.fatal({ err }, 'cannot start');
    send({ meshd: 'start_failed', reason: (err as Error).message });
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      tls?.stop();
      log.info({ why, inFlight: daemon.inFlight }, 'worker draining');
      void daemon.drain(config.drainTimeoutMs).then(({ abandoned }) => {
        if (abandoned > 0) log.warn({ abandoned }, 'drain timeout reached; closed connections with requests still in flight');
        link.flush();
        resolve(0);
      });
    };
    process.on('message', (message: unknown, handle: unknown) => {
      if (!isSupervisorMessage(message)) return;
      switch (message.meshd) {
        case 'connection':
          if (handle instanceof Socket) daemon.adopt(message.listener, handle);
          return;
        case 'feedback':
          link.deliver(message.service, message.update);
          return;
        case 'traffic':
          daemon.applyTrafficState(message.state);
          return;
        case 'reload':
          void reload(message.text).then((problems) =>
            send({ meshd: 'reloaded', id: message.id, ok: problems === undefined, ...(problems === undefined ? {} : { problems }) }),
          );
          return;
        case 'query':
          void (
            message.what === 'state' ? Promise.resolve(daemon.state()) : message.what === 'graph' ? Promise.resolve(daemon.graph.raw()) : daemon.metrics.json()
          ).then((value) => send({ meshd: 'answer', id: message.id, value }));
          return;
        case 'drain':
          stop('supervisor asked');
          return;
      }
    });
    // systemd signals the whole control group; the supervisor's own drain message may follow.
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => log.debug('SIGHUP ignored: the supervisor reloads every worker'));
    process.on('disconnect', () => stop('supervisor gone'));
  });

  /** Applies the config text the supervisor accepted; undefined when it applied, else the problems. */
  async function reload(next: string): Promise<string[] | undefined> {
    if (configPath === undefined) return undefined;
    try {
      const { config: fresh } = await loadConfigFileWithText(configPath, () => Promise.resolve(next));
      await daemon.reload(fresh);
      config = fresh;
      return undefined;
    } catch (err) {
      return err instanceof ConfigError ? err.problems.map((p) => `${p.path}: ${p.message}`) : [String(err)];
    }
  }
}

/** Asks the supervisor for this worker's start and waits for it; undefined if the supervisor left first. */
function startMessage(send: (message: WorkerMessage) => void): Promise<WorkerStart | undefined> {
  return new Promise((resolve) => {
    const onMessage = (message: unknown): void => {
      if (!isSupervisorMessage(message) || message.meshd !== 'start') return;
      done(message.start);
    };
    const done = (start: WorkerStart | undefined): void => {
      process.off('message', onMessage);
      process.off('disconnect', gone);
      resolve(start);
    };
    const gone = (): void => done(undefined);
    process.on('message', onMessage);
    process.on('disconnect', gone);
    send({ meshd: 'hello' });
  });
}
