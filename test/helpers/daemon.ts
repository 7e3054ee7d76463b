/**
 * Runs a real meshd process for integration tests: writes the config to a
 * temp dir, spawns `bin/meshd.js run`, and reads the JSON log lines to learn
 * the ephemeral ports it bound.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const MESHD_BIN = fileURLToPath(new URL('../../bin/meshd.js', import.meta.url));

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface RunningDaemon {
  proc: ChildProcess;
  dir: string;
  configPath: string;
  outbound: string;
  admin: string;
  logs: LogLine[];
  stderr: string[];
  /** Resolves with the first log line from index `from` on that matches. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number, from?: number): Promise<LogLine>;
  writeConfig(yaml: string): void;
  signal(sig: NodeJS.Signals): void;
  /** Resolves with the exit code once the process ends. */
  exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Extra files to write beside the config, by name. */
  files?: Record<string, string>;
  /** Run under `prlimit --nofile=N` (connection-cap tests). */
  nofile?: number;
  /** How meshd is started, before `run --config FILE`; default: this node and bin/meshd.js. */
  command?: string[];
}

export async function startDaemon(configYaml: string, opts: StartOptions = {}): Promise<RunningDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-test-'));
  const configPath = join(dir, 'meshd.yaml');
  for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(join(dir, name), text);
  writeFileSync(configPath, configYaml);
  const [program, ...prefix] = opts.command ?? [process.execPath, MESHD_BIN];
  const args = [...prefix, 'run', '--config', configPath];
  const [cmd, argv] = opts.nofile === undefined ? [program!, args] : ['prlimit', [`--nofile=${opts.nofile}`, program!, ...args]];
  const proc = spawn(cmd, argv, { env: { ...process.env, MESHD_LOG_LEVEL: 'info', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const stderr: string[] = [];
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  createInterface({ input: proc.stdout }).on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      return;
    }
    logs.push(line);
    for (const w of [...waiters]) {
      if (w.predicate(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  createInterface({ input: proc.stderr }).on('line', (text) => stderr.push(text));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 10_000, from = 0): Promise<LogLine> => {
    const seen = logs.slice(from).find(predicate);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`log line not seen within ${timeoutMs} ms; stderr: ${stderr.join('\n')}; last logs: ${JSON.stringify(logs.slice(-5))}`)),
        timeoutMs,
      );
      waiters.push({
        predicate,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`meshd exited with ${code} before the log line; stderr: ${stderr.join('\n')}`));
      });
    });
  };

  const outboundLine = await waitForLog((l) => l.msg === 'listening' && l['listener'] === 'outbound');
  const adminLine = await waitForLog((l) => l.msg === 'listening' && l['listener'] === 'admin');
  let stopSignalled = false;
  const daemon: RunningDaemon = {
    proc,
    dir,
    configPath,
    outbound: outboundLine['address'] as string,
    admin: adminLine['address'] as string,
    logs,
    stderr,
    waitForLog,
    writeConfig: (yaml) => writeFileSync(configPath, yaml),
    signal: (sig) => {
      if (sig === 'SIGTERM' || sig === 'SIGINT') stopSignalled = true;
      proc.kill(sig);
    },
    exited,
    async stop() {
      // A second SIGTERM means "stop now" to meshd; send one only if none was sent.
      if (!stopSignalled && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
  return daemon;
}

/** Runs a meshd subcommand to completion. */
export function runMeshd(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [MESHD_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
