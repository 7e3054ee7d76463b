#!/usr/bin/env node
// Entry point of the `meshd` executable, however it is started (npx meshd, npm start,
// bin/meshd.js under any node, the systemd unit, the image). It makes sure that the daemon runs
//   - on the Node.js 24 runtime pinned in package.json: an older node (e.g. the system's)
//     re-runs it under the pinned one;
//   - with the runtime settings meshd is measured with (docs/design.md): V8's young generation
//     capped and two glibc malloc arenas. Both must be in place when the process starts, so a
//     process started without them replaces itself (execve: same pid, which systemd and the
//     watchdog rely on) with one that has them. Settings the caller gave are kept.
// It runs the built modules in dist/ (`npm run build`: the sources with their types stripped)
// when they are at least as new as every source, else the TypeScript sources directly.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { missingFlags, needsRuntimeSettings, runtimeEnv } from './runtime-settings.js';

/** The commands that run the daemon; the others (check, cert…) start and exit too quickly to matter. */
const DAEMON_COMMANDS = new Set(['run', 'demo']);

const script = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const major = Number(process.versions.node.split('.')[0]);

if (major < 24) {
  const pinned = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(pinned)) {
    process.stderr.write(`meshd needs Node.js 24 (this is ${process.version}); run "npm ci" in the meshd directory first\n`);
    process.exit(1);
  }
  const child = spawn(pinned, [...missingFlags(process.execArgv, process.env), script, ...args], { stdio: 'inherit', env: runtimeEnv(process.env) });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)));
} else if (DAEMON_COMMANDS.has(args[0] ?? '') && needsRuntimeSettings(process.execArgv, process.env) && canReplaceItself()) {
  process.execve(
    process.execPath,
    [process.execPath, ...process.execArgv, ...missingFlags(process.execArgv, process.env), script, ...args],
    runtimeEnv(process.env),
  );
} else {
  await import(builtIsCurrent() ? '../dist/cli/main.js' : '../src/cli/main.ts');
}

/**
 * Whether an execve keeps everything this process was handed. Node's execve closes every
 * descriptor but stdio, so a process holding listening sockets (systemd socket activation, a
 * restart hand-over) or an IPC channel (a worker forked by the supervisor, which gives its
 * workers the settings itself) keeps running as started. The systemd unit and the image give
 * the settings in their command lines; /debug/state shows what a process runs with.
 */
function canReplaceItself() {
  if (process.env.NODE_CHANNEL_FD !== undefined) return false;
  // The same test as src/systemd/listen-fds.ts: a count, for this pid or for no pid in particular.
  const count = Number(process.env.LISTEN_FDS);
  const forPid = process.env.LISTEN_PID;
  const handedOver = Number.isInteger(count) && count > 0 && (forPid === undefined || forPid === '' || Number(forPid) === process.pid);
  if (handedOver) {
    process.stderr.write(
      'meshd: started with inherited listening sockets, which a restart in place would close, so the runtime settings (--max-semi-space-size=4, MALLOC_ARENA_MAX=2) are not applied; give them in the command that starts meshd\n',
    );
  }
  return !handedOver;
}

/** Whether dist/ was built after the last change to any source file. */
function builtIsCurrent() {
  const stamp = fileURLToPath(new URL('../dist/BUILT', import.meta.url));
  if (!existsSync(stamp)) return false;
  const builtAt = statSync(stamp).mtimeMs;
  const src = fileURLToPath(new URL('../src', import.meta.url));
  if (!existsSync(src)) return true; // a release may ship dist/ only
  const newer = readdirSync(src, { recursive: true, withFileTypes: true }).some((e) => e.isFile() && statSync(`${e.parentPath}/${e.name}`).mtimeMs > builtAt);
  return !newer;
}
