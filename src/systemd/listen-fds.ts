/**
 * Socket activation (sd_listen_fds): listening sockets handed over by systemd
 * (meshd.socket) or by a previous meshd. They survive a restart, so new
 * connections wait in the kernel's backlog instead of being refused while the
 * next process starts, and the old process drains what it accepted.
 */

const SD_LISTEN_FDS_START = 3;

/** Inherited listening descriptors by name (LISTEN_FDNAMES), or "fd<N>" when unnamed. */
export function inheritedListeners(env: NodeJS.ProcessEnv, pid = process.pid): Map<string, number> {
  const out = new Map<string, number>();
  const count = Number(env['LISTEN_FDS']);
  if (!Number.isInteger(count) || count <= 0) return out;
  const forPid = env['LISTEN_PID'];
  if (forPid !== undefined && forPid !== '' && Number(forPid) !== pid) return out;
  const names = (env['LISTEN_FDNAMES'] ?? '').split(':');
  for (let i = 0; i < count; i++) out.set(names[i] !== undefined && names[i] !== '' ? names[i]! : `fd${SD_LISTEN_FDS_START + i}`, SD_LISTEN_FDS_START + i);
  return out;
}
