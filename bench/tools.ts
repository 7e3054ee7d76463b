/**
 * The external load generators and reference proxies: wrk, h2load (the
 * http2 scenario only), nginx, HAProxy.
 * Missing ones are installed from Debian's packages with apt-get; `apt-get
 * update` runs only when a plain install fails.
 */
import { spawnSync } from 'node:child_process';
import { findExecutable } from './procs.ts';

export interface Tools {
  readonly wrk: string;
  readonly wrk2: string | undefined;
  readonly nginx: string | undefined;
  readonly haproxy: string | undefined;
  /** h2load (nghttp2-client); looked for (and installed) only when a scenario needs it. */
  readonly h2load: string | undefined;
  readonly notes: string[];
}

interface Need {
  readonly binary: string;
  /** Debian packages to try, in order. */
  readonly packages: readonly string[];
}

let updated = false;

function apt(args: readonly string[]): boolean {
  const r = spawnSync('apt-get', args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeout: 10 * 60_000,
  });
  return r.status === 0;
}

function install(need: Need, log: (line: string) => void): string | undefined {
  const found = findExecutable(need.binary);
  if (found !== undefined) return found;
  if (findExecutable('apt-get') === undefined) {
    log(`${need.binary}: not found and apt-get is unavailable`);
    return undefined;
  }
  for (const pkg of need.packages) {
    log(`${need.binary}: not found, installing Debian package ${pkg}`);
    if (!apt(['install', '-y', '--no-install-recommends', pkg]) && !updated) {
      log('apt-get install failed; running apt-get update and retrying');
      updated = true;
      apt(['update']);
      apt(['install', '-y', '--no-install-recommends', pkg]);
    }
    const path = findExecutable(need.binary);
    if (path !== undefined) return path;
  }
  log(`${need.binary}: could not be installed (tried ${need.packages.join(', ')})`);
  return undefined;
}

/**
 * wrk is required (throws); nginx and haproxy are skipped with a note when they
 * cannot be had; h2load is installed only when `needH2load` (the scenario
 * needing it fails without it).
 */
export function ensureTools(log: (line: string) => void, needH2load = false): Tools {
  const notes: string[] = [];
  const note = (line: string): void => {
    notes.push(line);
    log(line);
  };
  const wrk = install({ binary: 'wrk', packages: ['wrk'] }, note);
  if (wrk === undefined) throw new Error('wrk is required and could not be installed');
  const nginx = install({ binary: 'nginx', packages: ['nginx-light', 'nginx'] }, note);
  const haproxy = install({ binary: 'haproxy', packages: ['haproxy'] }, note);
  if (nginx === undefined) note('nginx unavailable: its rows are skipped');
  if (haproxy === undefined) note('haproxy unavailable: its rows are skipped');
  // wrk2 (fixed-rate, coordinated-omission-corrected latency) is not in Debian; used only if present.
  const wrk2 = findExecutable('wrk2');
  const h2load = needH2load ? install({ binary: 'h2load', packages: ['nghttp2-client'] }, note) : findExecutable('h2load');
  if (needH2load && h2load === undefined) note('h2load unavailable: the http2 scenario cannot run');
  return { wrk, wrk2, nginx, haproxy, h2load, notes };
}
