#!/usr/bin/env node
// Entry point of the `meshd` executable. meshd runs on the Node.js 24 runtime
// pinned in package.json; when started by an older node (e.g. the system's),
// it re-runs itself under the pinned one. It runs the built modules in dist/
// (`npm run build`: the sources with their types stripped) when they are at
// least as new as every source, else the TypeScript sources directly.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** V8 settings meshd is measured with (docs/design.md): a 4 MiB young generation semi-space. */
const V8_FLAGS = ['--max-semi-space-size=4'];

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  const pinned = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(pinned)) {
    process.stderr.write(`meshd needs Node.js 24 (this is ${process.version}); run "npm ci" in the meshd directory first\n`);
    process.exit(1);
  }
  const child = spawn(pinned, [...V8_FLAGS, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)));
} else {
  await import(builtIsCurrent() ? '../dist/cli/main.js' : '../src/cli/main.ts');
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
