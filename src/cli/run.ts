/**
 * `meshd run`: the process around the daemon. Loads the config, starts the
 * daemon, tells systemd, reloads on SIGHUP and on file change (a bad config is
 * rejected and the running one keeps serving), and drains on SIGTERM/SIGINT.
 */
import { readFile } from 'node:fs/promises';
import { Supervisor } from '../cluster/supervisor.ts';
import { runWorker } from '../cluster/worker.ts';
import { WORKER_INDEX_ENV } from '../cluster/protocol.ts';
import { workerCount } from '../cluster/cores.ts';
import { monotonicClock } from '../clock.ts';
import { defaultConfig, loadConfigFileWithText } from '../config/load.ts';
import type { MeshConfig } from '../config/types.ts';
import { Daemon } from '../daemon.ts';
import { ConfigError, formatProblems } from '../errors.ts';
import { createLogger, effectiveLevel, exitOnUncaughtErrors, type Logger } from '../log.ts';
import { createNotifier, type Notifier } from '../systemd/notify.ts';
import { FileWatch } from '../util/file-watch.ts';
import { TlsState } from '../tls/tls-state.ts';
import { inheritedListeners } from '../systemd/listen-fds.ts';

const readText = (path: string): Promise<string> => readFile(path, 'utf8');

/** What `meshd run` starts, reloads and drains: one daemon, or the supervisor of several workers. */
interface Runnable {
  start(): Promise<unknown>;
  reload(config: MeshConfig, text: string): Promise<void>;
  recordReload(success: boolean, problems?: string[]): void;
  drain(timeoutMs: number): Promise<{ abandoned: number }>;
  readonly inFlight: number;
}

export async function runCommand(configPath: string | undefined): Promise<number> {
  if (process.env[WORKER_INDEX_ENV] !== undefined && process.send !== undefined) return runWorker(configPath);
  let config: MeshConfig;
  let configText: string | undefined;
  try {
    if (configPath === undefined) config = defaultConfig();
    else ({ config, text: configText } = await loadConfigFileWithText(configPath, readText));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`meshd: cannot start, ${err.file} is invalid:\n${formatProblems(err.file, err.problems)}\n`);
    return 1;
  }

  const log = createLogger(effectiveLevel(config.log.level, process.env));
  exitOnUncaughtErrors(log, 'the supervisor restarts meshd');

  const notifier = createNotifier(process.env, log);
  let tls: TlsState | undefined;
  if (config.tls !== undefined) {
    try {
      tls = await TlsState.load(config.tls, log);
    } catch (err) {
      log.fatal({ reason: (err as Error).message }, 'cannot start: the TLS material is unusable');
      process.stderr.write(`meshd: cannot start: ${(err as Error).message}\n`);
      return 1;
    }
    tls.start();
  }
  const inheritedFds = inheritedListeners(process.env);
  if (inheritedFds.size > 0) log.info({ listeners: Object.fromEntries(inheritedFds) }, 'using inherited listening sockets');
  const workers = workerCount(config.workers);
  const deps = { log, clock: monotonicClock, random: Math.random, tls, inheritedFds };
  const daemon: Runnable = workers > 1 ? new Supervisor(config, configText, workers, deps) : new Daemon(config, deps);
  try {
    await daemon.start();
  } catch (err) {
    log.fatal({ err }, 'cannot start');
    return 1;
  }
  log.info({ config: config.source, services: config.services.size, workers }, 'meshd ready');
  notifier.ready(statusLine(config));
  notifier.startWatchdog();

  const reloader = new Reloader(
    configPath,
    daemon,
    notifier,
    log,
    () => config,
    (c) => (config = c),
  );
  process.on('SIGHUP', () => {
    reloader.request('SIGHUP');
    void tls?.reload();
  });
  let watch: FileWatch | undefined;
  if (configPath !== undefined) {
    watch = new FileWatch(
      configPath,
      { settleMs: 200, pollMs: 2_000 },
      () => reloader.request('file change'),
      (err) => log.warn({ err: err.message, file: configPath }, 'cannot watch the config file; SIGHUP still reloads'),
    );
    if (configText !== undefined) watch.prime(configText);
    watch.start();
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        log.warn({ signal }, 'second stop signal: exiting without waiting for the drain');
        process.exit(1);
      }
      stopping = true;
      watch?.stop();
      tls?.stop();
      log.info({ signal, inFlight: daemon.inFlight, drainTimeoutMs: config.drainTimeoutMs }, 'stopping: draining requests in flight');
      notifier.stopping('draining');
      void daemon.drain(config.drainTimeoutMs).then(async ({ abandoned }) => {
        if (abandoned > 0) log.warn({ abandoned }, 'drain timeout reached; closed connections with requests still in flight');
        log.info('stopped');
        notifier.stop();
        await notifier.flush();
        resolve(0);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

function statusLine(config: MeshConfig): string {
  return `serving ${config.services.size} service(s) from ${config.source}`;
}

/** Serialises reloads: one at a time, each a complete load → validate → apply. */
class Reloader {
  private chain: Promise<void> = Promise.resolve();
  private readonly path: string | undefined;
  private readonly daemon: Runnable;
  private readonly notifier: Notifier;
  private readonly log: Logger;
  private readonly current: () => MeshConfig;
  private readonly replace: (config: MeshConfig) => void;

  constructor(path: string | undefined, daemon: Runnable, notifier: Notifier, log: Logger, current: () => MeshConfig, replace: (config: MeshConfig) => void) {
    this.path = path;
    this.daemon = daemon;
    this.notifier = notifier;
    this.log = log;
    this.current = current;
    this.replace = replace;
  }

  request(trigger: string): void {
    this.chain = this.chain.then(() => this.reload(trigger));
  }

  private async reload(trigger: string): Promise<void> {
    this.notifier.reloading();
    try {
      if (this.path === undefined) {
        this.log.info({ trigger }, 'running on the embedded default config; nothing to reload');
        return;
      }
      const { config, text } = await loadConfigFileWithText(this.path, readText);
      await this.daemon.reload(config, text);
      this.replace(config);
      this.log.info({ trigger, config: this.path, services: config.services.size }, 'config reloaded');
    } catch (err) {
      const problems =
        err instanceof ConfigError ? err.problems.map((p) => `${p.line === undefined ? '' : `line ${p.line}: `}${p.path}: ${p.message}`) : [String(err)];
      this.daemon.recordReload(false, problems);
      this.log.error({ trigger, config: this.path, problems }, 'config rejected; the running config keeps serving');
    } finally {
      this.notifier.ready(statusLine(this.current()));
    }
  }
}
