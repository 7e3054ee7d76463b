/**
 * Connection caps sized from the process's open-file limit. Each proxied
 * client connection may need one upstream connection, and the admin listener,
 * config and log files need descriptors too, so the outbound listener gets at
 * most half of what is left after a reserve; excess connections are closed
 * at accept instead of exhausting descriptors for everything else.
 */
import { readFileSync } from 'node:fs';

/** The soft RLIMIT_NOFILE of this process, read from /proc; undefined when unknown. */
export function openFileLimit(readText: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | undefined {
  try {
    const line = readText('/proc/self/limits')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    if (soft === undefined) return undefined;
    return soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft);
  } catch {
    return undefined;
  }
}

/** Descriptors held back for admin, upstream bursts, files and logs. */
export function fdReserve(limit: number): number {
  return Math.min(1024, Math.max(64, Math.floor(limit * 0.1)));
}

/** The outbound listener's cap for `maxConnections: auto`. */
export function autoConnectionCap(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return 10_000;
  return Math.max(16, Math.floor((limit - fdReserve(limit)) / 2));
}
