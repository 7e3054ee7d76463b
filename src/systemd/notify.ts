/**
 * The systemd notify protocol (sd_notify): READY, RELOADING, STOPPING,
 * STATUS and the watchdog. Node cannot send unix datagrams itself, so each
 * message is sent by the `systemd-notify` tool; systemd accepts those only
 * with `NotifyAccess=all` in the unit (systemd/meshd.service sets it), and the
 * tool's BARRIER wait makes sure systemd read the message before the sender
 * exits. Messages go out one at a time, in order. See docs/design.md.
 */
import { execFile } from 'node:child_process';
import type { Logger } from '../log.ts';

export type RunTool = (file: string, args: readonly string[], env: NodeJS.ProcessEnv) => Promise<void>;

const runTool: RunTool = (file, args, env) =>
  new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: 5_000 }, (err) => {
      if (err === null) resolve();
      else reject(new Error(`${file} failed: ${err.message}`, { cause: err }));
    });
  });

export interface Notifier {
  readonly enabled: boolean;
  ready(status: string): void;
  reloading(): void;
  stopping(status: string): void;
  status(status: string): void;
  /** Starts WATCHDOG=1 pings at half of WATCHDOG_USEC, when systemd asked for them. */
  startWatchdog(): void;
  /** Resolves once every queued message was handed over. */
  flush(): Promise<void>;
  stop(): void;
}

/** Microseconds on CLOCK_MONOTONIC, as systemd wants for MONOTONIC_USEC. */
function monotonicUsec(): string {
  return (process.hrtime.bigint() / 1000n).toString();
}

export function createNotifier(env: NodeJS.ProcessEnv, log: Logger, run: RunTool = runTool): Notifier {
  const socket = env['NOTIFY_SOCKET'];
  const enabled = socket !== undefined && socket !== '';
  let queue: Promise<void> = Promise.resolve();
  let watchdog: NodeJS.Timeout | undefined;
  let pingInFlight = false;
  let warned = false;

  const send = (...assignments: string[]): Promise<void> => {
    if (!enabled) return Promise.resolve();
    queue = queue.then(() =>
      run('systemd-notify', assignments, env).catch((err: unknown) => {
        if (!warned) log.warn({ err, assignments }, 'systemd-notify failed; is the systemd package installed?');
        warned = true;
      }),
    );
    return queue;
  };

  return {
    enabled,
    ready: (status) => void send('READY=1', `STATUS=${status}`),
    reloading: () => void send('RELOADING=1', `MONOTONIC_USEC=${monotonicUsec()}`, 'STATUS=reloading config'),
    stopping: (status) => void send('STOPPING=1', `STATUS=${status}`),
    status: (status) => void send(`STATUS=${status}`),
    startWatchdog() {
      const usec = Number(env['WATCHDOG_USEC']);
      const pid = env['WATCHDOG_PID'];
      if (!enabled || !Number.isFinite(usec) || usec <= 0) return;
      if (pid !== undefined && pid !== '' && Number(pid) !== process.pid) return;
      const intervalMs = Math.max(1, Math.floor(usec / 2 / 1000));
      // Pinged from the event loop: a blocked loop stops the pings and systemd restarts us.
      watchdog = setInterval(() => {
        if (pingInFlight) return;
        pingInFlight = true;
        void send('WATCHDOG=1').finally(() => (pingInFlight = false));
      }, intervalMs);
      watchdog.unref();
      log.info({ intervalMs }, 'systemd watchdog enabled');
    },
    flush: () => queue,
    stop() {
      clearInterval(watchdog);
    },
  };
}
