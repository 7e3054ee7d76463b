/** A raw TCP client for tests. */
import { connect } from 'node:net';
import { splitAddress } from './http.ts';

/** Sends `text`, half-closes, and returns everything the server sent back before its end. */
export function tcpRoundTrip(address: string, text: string, localAddress?: string): Promise<string> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, allowHalfOpen: true, ...(localAddress === undefined ? {} : { localAddress }) });
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString()));
    socket.on('end', () => {
      socket.end();
      resolve(got);
    });
    socket.on('error', reject);
    socket.setTimeout(5_000, () => socket.destroy(new Error('tcp round trip timed out')));
    socket.end(text);
  });
}
