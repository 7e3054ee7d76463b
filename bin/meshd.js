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

/** V8 flags by the option they set: a 4 MiB young-generation semi-space (8 MiB new space). */
const V8_FLAGS = [['--max-semi-space-size', '--max-semi-space-size=4']];
/** Environment read at process start: glibc's arena count (7–9 MiB less resident under load). */
const RUNTIME_ENV = { MALLOC_ARENA_MAX: '2' };
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
  const child = spawn(pinned, [...missingFlags(), script, ...args], { stdio: 'inherit', env: runtimeEnv() });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)));
} else if (DAEMON_COMMANDS.has(args[0] ?? '') && needsRuntimeSettings()) {
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...missingFlags(), script, ...args], runtimeEnv());
} else {
  await import(builtIsCurrent() ? '../dist/cli/main.js' : '../src/cli/main.ts');
}

/** The measured V8 flags this process was not started with (given on the command line or in NODE_OPTIONS). */
function missingFlags() {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return V8_FLAGS.filter(([option]) => !given.some((a) => a === option || a.startsWith(`${option}=`))).map(([, flag]) => flag);
}

function runtimeEnv() {
  const env = { ...process.env };
  for (const [name, value] of Object.entries(RUNTIME_ENV)) env[name] ??= value;
  // Marks the replacement, so that a setting that does not take cannot loop.
  env.MESHD_RUNTIME_APPLIED = '1';
  return env;
}

function needsRuntimeSettings() {
  if (process.env.MESHD_RUNTIME_APPLIED === '1') return false;
  return missingFlags().length > 0 || Object.keys(RUNTIME_ENV).some((name) => process.env[name] === undefined);
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
