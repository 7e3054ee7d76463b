/**
 * Binding a listener: to host:port, or onto an inherited descriptor (socket
 * activation). A bind failure rejects; errors after the bind (EMFILE on
 * accept) are reported and must not take the daemon down.
 */
import type { AddressInfo, ListenOptions, Server } from 'node:net';

/** host:port options, or an inherited listening descriptor. */
export type BindTarget = ListenOptions | { fd: number };

export function bindServer(server: Server, options: BindTarget, onLaterError: (err: Error) => void): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      server.on('error', onLaterError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Listen options for host:port, or for an inherited descriptor when `fd` is set. `reusePort`:
 * each worker of a multi-worker meshd binds its own socket to the same port (SO_REUSEPORT) and
 * the kernel spreads new connections over them by address hash.
 */
export function listenTarget(host: string, port: number, fd: number | undefined, options: { backlog?: number; reusePort?: boolean } = {}): BindTarget {
  if (fd !== undefined) return { fd };
  return { host, port, ...(options.backlog === undefined ? {} : { backlog: options.backlog }), ...(options.reusePort === true ? { reusePort: true } : {}) };
}
