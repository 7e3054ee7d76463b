/**
 * The daemon's structured logger. pino writes JSON lines to stdout; the level
 * comes from the config unless MESHD_LOG_LEVEL overrides it.
 */
import { pino, type Logger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export type { Logger };

const LEVELS: ReadonlySet<string> = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

/** The effective level: MESHD_LOG_LEVEL when it names a level, else the config's. */
export function effectiveLevel(configured: LogLevel, env: NodeJS.ProcessEnv): LogLevel {
  const fromEnv = env['MESHD_LOG_LEVEL'];
  return fromEnv !== undefined && LEVELS.has(fromEnv) ? (fromEnv as LogLevel) : configured;
}

/** A bug that escaped every handler: logged, then exit 70 so that `restarter` starts a clean process. */
export function exitOnUncaughtErrors(log: Logger, restarter: string): void {
  for (const [event, what] of [
    ['uncaughtException', 'uncaught exception'],
    ['unhandledRejection', 'unhandled rejection'],
  ] as const) {
    process.on(event, (err: unknown) => {
      log.fatal({ err }, `${what}; exiting so that ${restarter}`);
      process.exit(70);
    });
  }
}

export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' });
}
