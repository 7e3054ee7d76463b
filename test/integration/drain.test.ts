/**
 * The drain on SIGTERM fails no request that reached meshd before it: a
 * connection accepted just before the drain (its first request still on the
 * wire), a request whose headers are half sent, and a keep-alive caller's next
 * request are all answered, each with `Connection: close` so the caller
 * reconnects to whatever serves the port next. Then idle connections close and
 * the process exits 0. Outbound (plain HTTP/1.1 and h2c) and the mTLS inbound
 * listener alike.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Agent } from 'node:http';
import { connect as h2Connect } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { startBackend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { request, sleep, splitAddress } from '../helpers/http.ts';
import { newCa, tlsBlock, writeHost } from '../helpers/pki.ts';

/** A raw connection: write when told, collect everything until the peer closes. */
async function openRaw(address: string): Promise<{ socket: Socket; closed: Promise<string> }> {
  const [host, port] = splitAddress(address);
  const socket = connect(port, host);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  const closed = new Promise<string>((resolve) => {
    socket.on('error', () => {});
    socket.once('close', () => resolve(text));
  });
  return { socket, closed };
}

const stopping = (d: RunningDaemon): Promise<unknown> => d.waitForLog((l) => l.msg.startsWith('stopping'));

describe('drain: requests already at meshd are answered', () => {
  it('outbound HTTP/1.1: a fresh connection’s first request, half-sent headers and a keep-alive caller’s next request', async () => {
    const backend = await startBackend((_req, res) => res.end('ok'));
    const meshd = await startDaemon(
      `admin: { listen: 127.0.0.1:0 }\noutbound: { listen: 127.0.0.1:0 }\ndrainTimeout: 5s\nservices:\n  api: { endpoints: [ { address: ${backend.address} } ] }\n`,
    );
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const fresh = await openRaw(meshd.outbound);
      const half = await openRaw(meshd.outbound);
      half.socket.write('GET /half HTTP/1.1\r\nHost: api\r\n');
      const first = await request(meshd.outbound, { headers: { host: 'api' }, agent });
      assert.equal(first.status, 200);
      assert.equal(first.headers['connection'], 'keep-alive');
      const silent = await openRaw(meshd.outbound);
      await sleep(100); // accepted by meshd
      meshd.signal('SIGTERM');
      await stopping(meshd);
      await sleep(100);
      fresh.socket.write('GET /fresh HTTP/1.1\r\nHost: api\r\n\r\n');
      half.socket.write('\r\n');
      const next = await request(meshd.outbound, { headers: { host: 'api' }, agent });
      assert.equal(next.status, 200);
      assert.equal(next.headers['connection'], 'close', 'the keep-alive caller is told to reconnect');
      for (const reply of [await fresh.closed, await half.closed]) {
        assert.match(reply, /^HTTP\/1\.1 200 OK\r\n/);
        assert.match(reply, /\r\nConnection: close\r\n/i);
        assert.match(reply, /\r\n\r\nok$/);
      }
      // A connection that never speaks is closed once the grace has passed, and holds up nothing.
      assert.equal(await silent.closed, '');
      assert.equal(await meshd.exited, 0);
    } finally {
      agent.destroy();
      await meshd.stop();
      await backend.close();
    }
  });

  it('outbound h2c: a stream in flight completes and the session gets GOAWAY', async () => {
    const backend = await startBackend((_req, res) => setTimeout(() => res.end('ok'), 300));
    const meshd = await startDaemon(
      `admin: { listen: 127.0.0.1:0 }\noutbound: { listen: 127.0.0.1:0 }\ndrainTimeout: 5s\nservices:\n  api: { endpoints: [ { address: ${backend.address} } ] }\n`,
    );
    const h2Get = (session: ReturnType<typeof h2Connect>): Promise<string> =>
      new Promise((resolve, reject) => {
        const stream = session.request({ ':path': '/', ':authority': 'api' });
        let status = 0;
        let body = '';
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', (d: Buffer) => (body += d.toString()));
        stream.on('end', () => resolve(`${status} ${body}`));
        stream.on('error', reject);
        stream.end();
      });
    try {
      const early = h2Connect(`http://${meshd.outbound}`);
      const goaway = new Promise<void>((resolve) => early.once('goaway', () => resolve()));
      early.on('error', () => {});
      const inFlight = h2Get(early);
      await sleep(100);
      meshd.signal('SIGTERM');
      await stopping(meshd);
      assert.equal(await inFlight, '200 ok');
      await goaway;
      early.close();
      assert.equal(await meshd.exited, 0);
    } finally {
      await meshd.stop();
      await backend.close();
    }
  });

  it('mTLS inbound: a keep-alive peer’s next request is served with Connection: close', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-drain-'));
    const ca = await newCa();
    const server = await writeHost(dir, 'b', ca, ca.certPem);
    const peer = await writeHost(dir, 'a', ca, ca.certPem);
    const backend = await startBackend((_req, res) => res.end('ok'));
    const meshd = await startDaemon(
      `admin: { listen: 127.0.0.1:0 }\noutbound: { listen: 127.0.0.1:0 }\ninbound: { listen: 127.0.0.1:0 }\ndrainTimeout: 5s\n${tlsBlock(server.dir)}\nlocal:\n  web: { target: ${backend.address} }\n`,
    );
    const inbound = (await meshd.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'inbound'))['address'] as string;
    const [host, port] = splitAddress(inbound);
    const agent = new HttpsAgent({
      keepAlive: true,
      maxSockets: 1,
      cert: readFileSync(join(peer.dir, 'cert.pem')),
      key: readFileSync(join(peer.dir, 'key.pem')),
      ca: readFileSync(join(peer.dir, 'ca.pem')),
      checkServerIdentity: () => undefined,
    });
    const get = (): Promise<{ status: number; connection: string | undefined }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest({ host, port, path: '/', headers: { host: 'web' }, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers['connection'] }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      assert.deepEqual(await get(), { status: 200, connection: 'keep-alive' });
      meshd.signal('SIGTERM');
      await stopping(meshd);
      await sleep(100);
      assert.deepEqual(await get(), { status: 200, connection: 'close' });
      assert.equal(await meshd.exited, 0);
    } finally {
      agent.destroy();
      await meshd.stop();
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
