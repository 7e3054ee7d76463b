/**
 * The admin listener's connection cap, which a slow client must not be able
 * to fill: when every slot is taken, a new connection takes the slot of the
 * oldest one that is not being answered (idle keep-alive, or still sending
 * its request head, as a slowloris does). Only when every connection is
 * busy with a request is the new one refused. A liveness probe therefore
 * always gets through, whatever a local process does to the port.
 */
import type { Socket } from 'node:net';

export class ConnectionSlots {
  private readonly cap: number;
  /** Open connections, oldest first (Map keeps insertion order). */
  private readonly open = new Map<Socket, { busy: number }>();

  constructor(cap: number) {
    this.cap = cap;
  }

  get size(): number {
    return this.open.size;
  }

  /** Admits a new connection, evicting the oldest idle one when full; false: refused. */
  admit(socket: Socket): boolean {
    if (this.open.size >= this.cap) {
      const idle = this.oldestIdle();
      if (idle === undefined) return false;
      this.open.delete(idle);
      idle.destroy();
    }
    this.open.set(socket, { busy: 0 });
    socket.once('close', () => this.open.delete(socket));
    return true;
  }

  /** A request head arrived on `socket`; call `done` once its response is over. */
  requestStarted(socket: Socket): () => void {
    const entry = this.open.get(socket);
    if (entry === undefined) return () => {};
    entry.busy++;
    let finished = false;
    return () => {
      if (finished) return;
      finished = true;
      entry.busy--;
    };
  }

  private oldestIdle(): Socket | undefined {
    for (const [socket, entry] of this.open) if (entry.busy === 0) return socket;
    return undefined;
  }
}
