// The runtime settings meshd's memory was measured with (docs/design.md, "Memory"): V8's young
// generation capped at 4 MiB semi-spaces, and two glibc malloc arenas. Both must be in place when
// a process starts. bin/meshd.js applies them to the daemon, the supervisor to every worker it
// forks. Plain JavaScript: bin/meshd.js reads it before it knows which node runs it.

/** V8 flags by the option they set. */
export const V8_FLAGS = [['--max-semi-space-size', '--max-semi-space-size=4']];
/** Environment read at process start: glibc's arena count (7–9 MiB less resident under load). */
export const RUNTIME_ENV = { MALLOC_ARENA_MAX: '2' };
/** Marks a process started with the settings, so that a setting that does not take cannot loop. */
export const APPLIED_MARK = 'MESHD_RUNTIME_APPLIED';

/** The measured V8 flags a process with these arguments and environment was not started with. */
export function missingFlags(execArgv, env) {
  const given = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)];
  return V8_FLAGS.filter(([option]) => !given.some((a) => a === option || a.startsWith(`${option}=`))).map(([, flag]) => flag);
}

/** `env` with the runtime settings added where the caller gave none, and the mark set. */
export function runtimeEnv(env) {
  const out = { ...env };
  for (const [name, value] of Object.entries(RUNTIME_ENV)) out[name] ??= value;
  out[APPLIED_MARK] = '1';
  return out;
}

/** Whether a process with these arguments and environment lacks a setting. */
export function needsRuntimeSettings(execArgv, env) {
  if (env[APPLIED_MARK] === '1') return false;
  return missingFlags(execArgv, env).length > 0 || Object.keys(RUNTIME_ENV).some((name) => env[name] === undefined);
}
