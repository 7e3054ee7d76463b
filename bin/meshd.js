#!/usr/bin/env node
// Entry point of the `meshd` executable. meshd runs its TypeScript sources
// directly on the Node.js 24 runtime pinned in package.json; when started by
// an older node (e.g. the system's), re-run under the pinned one.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  const pinned = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(pinned)) {
    process.stderr.write(`meshd needs Node.js 24 (this is ${process.version}); run "npm ci" in the meshd directory first\n`);
    process.exit(1);
  }
  const child = spawn(pinned, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)));
} else {
  await import('../src/cli/main.ts');
}
