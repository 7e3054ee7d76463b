/**
 * Builds dist/: every module of src/ with its TypeScript types stripped and
 * its relative imports pointed at the .js files. meshd runs dist/ when it is
 * current (bin/meshd.js), because loading the sources through Node's type
 * stripping keeps its compiler resident: about 30 MiB more per process (see
 * docs/design.md). Whitespace replaces the types, so line and column numbers
 * in stack traces stay those of the sources. No type checking here: `npm
 * test` runs tsc.
 *
 * Usage: node scripts/build.ts
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = join(ROOT, 'src');
const DIST = join(ROOT, 'dist');
/** Written last: bin/meshd.js runs dist/ only if this is newer than every source. */
export const STAMP = 'BUILT';

/** `from './x.ts'`, `import './x.ts'`, `import('./x.ts')` with a relative specifier. */
const RELATIVE_TS_IMPORT = /(\bfrom\s*|\bimport\s*\(?\s*)(['"])(\.{1,2}\/[^'"\n]+)\.ts\2/g;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

export function stripModule(text: string): string {
  // The experimental-API warning is noise for a build tool.
  const js = stripTypeScriptTypes(text, { mode: 'strip' });
  return js.replace(RELATIVE_TS_IMPORT, (_m, lead: string, quote: string, path: string) => `${lead}${quote}${path}.js${quote}`);
}

function build(): number {
  rmSync(DIST, { recursive: true, force: true });
  const files = sources(SRC);
  for (const file of files) {
    const out = join(DIST, relative(SRC, file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, stripModule(readFileSync(file, 'utf8')));
  }
  writeFileSync(join(DIST, STAMP), `${new Date().toISOString()}\n`);
  return files.length;
}

if (import.meta.main) {
  process.removeAllListeners('warning');
  const count = build();
  process.stdout.write(`built ${count} modules into dist/\n`);
}
