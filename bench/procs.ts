/**
 * Child processes of the benchmark: spawning (optionally CPU-pinned with
 * taskset, and tied to this process's life with setpriv --pdeathsig), free
 * loopback ports, readiness probes, and cleanup that runs on normal exit, on
 * errors and on Ctrl-C. Every child gets its own process group so that one
 * signal reaches its whole tree (nginx's workers too).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

const EXTRA_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The absolute path of an executable on PATH or in the usual system dirs. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(':'), ...EXTRA_DIRS];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or 'timeout' after `ms`; the timer is cleared either way so it never holds the process open. */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** A free TCP port on 127.0.0.1 (bound then released; the race is harmless on a quiet host). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Where stdout and stderr go when not captured. */
  readonly logFile: string | undefined;
  /** Captured stdout+stderr when `capture` was set. */
  output: string;
  exit: ExitInfo | undefined;
  readonly exited: Promise<ExitInfo>;
}

export interface SpawnSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  /** CPU to pin to; ignored when pinning is off. */
  readonly cpu?: number | undefined;
  /** Send stdout and stderr to this file (default: capture into `output`). */
  readonly logFile?: string | undefined;
  readonly env?: NodeJS.ProcessEnv | undefined;
  readonly cwd?: string | undefined;
}

export interface Pinning {
  readonly enabled: boolean;
  readonly reason: string;
}

const live = new Set<Proc>();
let tasksetPath: string | undefined;
let setprivPath: string | undefined;
let pinning: Pinning = { enabled: false, reason: 'not configured' };

/** Decides once whether children are pinned (taskset present, ≥2 CPUs, not disabled by BENCH_PIN=0). */
export function configurePinning(disabled: boolean): Pinning {
  tasksetPath = findExecutable('taskset');
  setprivPath = findExecutable('setpriv');
  const cpus = availableParallelism();
  if (disabled) pinning = { enabled: false, reason: 'disabled by BENCH_PIN=0' };
  else if (tasksetPath === undefined) pinning = { enabled: false, reason: 'taskset not found' };
  else if (cpus < 2) pinning = { enabled: false, reason: `only ${cpus} CPU available` };
  else pinning = { enabled: true, reason: 'taskset' };
  return pinning;
}

/** Starts a child in its own process group; it is stopped by stopAll() at the latest. */
export function startProcess(spec: SpawnSpec): Proc {
  const prefix: string[] = [];
  // If this process dies without cleaning up (SIGKILL), the kernel still sends SIGTERM to the child.
  if (setprivPath !== undefined) prefix.push(setprivPath, '--pdeathsig', 'TERM', '--');
  if (pinning.enabled && tasksetPath !== undefined && spec.cpu !== undefined) prefix.push(tasksetPath, '-c', String(spec.cpu));
  const argv = [...prefix, spec.command, ...spec.args];
  const [command, ...args] = argv as [string, ...string[]];

  let fd: number | undefined;
  if (spec.logFile !== undefined) fd = openSync(spec.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      detached: true,
      stdio: fd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', fd, fd],
      env: spec.env ?? process.env,
      cwd: spec.cwd,
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  let resolveExit: (info: ExitInfo) => void = () => {};
  const exited = new Promise<ExitInfo>((resolve) => (resolveExit = resolve));
  const proc: Proc = {
    name: spec.name,
    pid: child.pid ?? -1,
    child,
    logFile: spec.logFile,
    output: '',
    exit: undefined,
    exited,
  };
  const append = (chunk: Buffer): void => {
    proc.output += chunk.toString('utf8');
    if (proc.output.length > 1_000_000) proc.output = proc.output.slice(-500_000);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const finish = (info: ExitInfo): void => {
    if (proc.exit !== undefined) return;
    proc.exit = info;
    live.delete(proc);
    resolveExit(info);
  };
  child.on('error', (err) => {
    proc.output += `\n[spawn error] ${err.message}\n`;
    finish({ code: 127, signal: null });
  });
  // 'close' (not 'exit'): it comes after stdout/stderr are drained, so `output` is complete.
  child.on('close', (code, signal) => finish({ code, signal }));
  if (child.pid !== undefined) live.add(proc);
  return proc;
}

function signalGroup(proc: Proc, signal: NodeJS.Signals): void {
  if (proc.pid <= 0) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    try {
      process.kill(proc.pid, signal);
    } catch {
      // already gone
    }
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
export async function stopProcess(proc: Proc, graceMs = 5_000): Promise<void> {
  if (proc.exit !== undefined) {
    signalGroup(proc, 'SIGKILL'); // stragglers of the group (e.g. orphaned workers)
    return;
  }
  signalGroup(proc, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(proc, 'SIGKILL'), graceMs);
  await withTimeout(proc.exited, graceMs + 2_000);
  clearTimeout(timer);
  signalGroup(proc, 'SIGKILL');
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => stopProcess(p)));
}

/** Last resort from a synchronous 'exit' handler: SIGKILL every live group. */
export function killAllSync(): void {
  for (const proc of live) signalGroup(proc, 'SIGKILL');
}

export function tailOf(proc: Proc, chars = 3_000): string {
  let text = proc.output;
  if (proc.logFile !== undefined) {
    try {
      text = readFileSync(proc.logFile, 'utf8');
    } catch {
      // no log yet
    }
  }
  return text.length > chars ? `…${text.slice(-chars)}` : text;
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: Buffer;
}

/** One GET to 127.0.0.1:port with `headers` (default `Host: bench`), on a fresh connection, bounded by `timeoutMs`. */
export function httpGet(port: number, path: string, timeoutMs: number, headers: Readonly<Record<string, string>> = { host: 'bench' }): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers: { ...headers }, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Polls `port` until GET `path` (with `headers`, default `Host: bench`) answers
 * 200 with a body of `expectLength` bytes, or fails after `deadlineMs` (or as
 * soon as `proc` exits).
 */
export async function waitReady(
  proc: Proc,
  port: number,
  path: string,
  expectLength: number,
  deadlineMs = 20_000,
  headers: Readonly<Record<string, string>> = { host: 'bench' },
): Promise<void> {
  const until = Date.now() + deadlineMs;
  let last = 'no attempt';
  while (Date.now() < until) {
    if (proc.exit !== undefined) {
      throw new Error(`${proc.name} exited (code ${proc.exit.code}, signal ${proc.exit.signal}) before it was ready:\n${tailOf(proc)}`);
    }
    try {
      const answer = await httpGet(port, path, 1_000, headers);
      if (answer.status === 200 && answer.body.length === expectLength) return;
      last = `status ${answer.status}, ${answer.body.length} bytes: ${answer.body.subarray(0, 200).toString()}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${proc.name} not ready on 127.0.0.1:${port}${path} within ${deadlineMs} ms (last: ${last}):\n${tailOf(proc)}`);
}

/** The value in kB of a field (VmRSS, VmHWM) of /proc/PID/status; undefined when gone. */
export function procStatusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return match?.[1] === undefined ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** Direct children of `pid`, found by scanning /proc/*\/stat (CONFIG_PROC_CHILDREN is often off). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ... — comm may contain spaces, so split after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === pid) out.push(Number(entry));
    } catch {
      // raced with exit
    }
  }
  return out;
}

/** utime+stime of `pid` in clock ticks (USER_HZ, 100 on Linux); undefined when gone. */
export function cpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    const ticks = Number(rest[11]) + Number(rest[12]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

/**
 * This process's own CPU ticks and those of its reaped children (cutime+cstime):
 * a child's CPU time lands in the latter when it exits, which is how wrk's is read.
 */
export function selfTicks(): { self: number; children: number } | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime 14, stime 15, cutime 16, cstime 17 (rest[0] is field 3).
    return { self: Number(rest[11]) + Number(rest[12]), children: Number(rest[13]) + Number(rest[14]) };
  } catch {
    return undefined;
  }
}

/** Jiffies spent in user, nice, system and steal over all CPUs (the 'cpu' line of /proc/stat). */
export function allCpuWorkJiffies(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('cpu '));
    if (line === undefined) return undefined;
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
    return (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[7] ?? 0);
  } catch {
    return undefined;
  }
}

/** Busy and total jiffies of one CPU from /proc/stat (busy = total − idle − iowait). */
export function cpuCoreJiffies(cpu: number): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`cpu${cpu} `));
    if (line === undefined) return undefined;
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** First line of `cmd args` (stdout or stderr), for version banners. */
export function firstLine(cmd: string, args: readonly string[]): string {
  // Typed as strings, but both are missing when the command cannot be started at all (not installed, say).
  const { stdout, stderr } = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 }) as { stdout: string | undefined; stderr: string | undefined };
  const text = `${stdout ?? ''}${stderr ?? ''}`.trim();
  return text.split('\n')[0]?.trim() ?? '';
}
