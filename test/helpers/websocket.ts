/**
 * Just enough of RFC 6455 for tests: a backend that echoes text frames, and a
 * client that performs the handshake (with any Host header) over a raw socket.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { splitAddress } from './http.ts';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

/** Encodes one text frame; clients must mask, servers must not. */
export function textFrame(text: string, masked: boolean): Buffer {
  const payload = Buffer.from(text);
  if (payload.length > 125) throw new Error('test frames are short');
  const header = Buffer.from([0x81, (masked ? 0x80 : 0) | payload.length]);
  if (!masked) return Buffer.concat([header, payload]);
  const mask = randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([header, mask, body]);
}

/** Decodes one short frame at the start of `buf`; undefined until it is complete. */
export function readFrame(buf: Buffer): { text: string; size: number; opcode: number } | undefined {
  if (buf.length < 2) return undefined;
  const masked = (buf[1]! & 0x80) !== 0;
  const len = buf[1]! & 0x7f;
  const start = 2 + (masked ? 4 : 0);
  if (buf.length < start + len) return undefined;
  const payload = Buffer.from(buf.subarray(start, start + len));
  if (masked) for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ buf[2 + (i % 4)]!;
  return { text: payload.toString(), size: start + len, opcode: buf[0]! & 0x0f };
}

/** Makes `server` answer WebSocket upgrades by echoing each text frame prefixed with "echo:". */
export function serveWebSocketEcho(server: Server, onHandshake: (req: IncomingMessage) => void = () => {}): void {
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    onHandshake(req);
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string') {
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${acceptKey(key)}\r\nx-seen-host: ${req.headers.host ?? ''}\r\n\r\n`,
    );
    let pending = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      for (let frame = readFrame(pending); frame !== undefined; frame = readFrame(pending)) {
        pending = pending.subarray(frame.size);
        // A close frame is answered with one, as RFC 6455 §5.5.1 asks, and the connection ends.
        if (frame.opcode === 0x8) return void socket.end(Buffer.from([0x88, 0]));
        socket.write(textFrame(`echo:${frame.text}`, false));
      }
    });
    socket.on('error', () => {});
    socket.once('end', () => socket.end());
  });
}

export interface WebSocketClient {
  status: number;
  responseHead: string;
  send(text: string): void;
  receive(): Promise<string>;
  close(): void;
}

/** Opens a WebSocket through `address` with the given Host; resolves after the response head. */
export function openWebSocket(address: string, host: string, path = '/', extraHeaders: Record<string, string> = {}): Promise<WebSocketClient> {
  const [h, port] = splitAddress(address);
  const key = randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const socket = connect(port, h);
    socket.on('error', reject);
    let buffered = Buffer.alloc(0);
    let head: string | undefined;
    const waiting: ((text: string) => void)[] = [];
    const frames: string[] = [];
    socket.on('data', (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      if (head === undefined) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        head = buffered.subarray(0, end).toString();
        buffered = buffered.subarray(end + 4);
        const status = Number(head.split(' ')[1]);
        resolve({
          status,
          responseHead: head,
          send: (text) => socket.write(textFrame(text, true)),
          receive: () =>
            new Promise((r) => {
              const next = frames.shift();
              if (next !== undefined) r(next);
              else waiting.push(r);
            }),
          close: () => socket.destroy(),
        });
        if (status !== 101) return;
      }
      for (let frame = readFrame(buffered); frame !== undefined; frame = readFrame(buffered)) {
        buffered = buffered.subarray(frame.size);
        const w = waiting.shift();
        if (w !== undefined) w(frame.text);
        else frames.push(frame.text);
      }
    });
    const extra = Object.entries(extraHeaders)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
    );
  });
}
