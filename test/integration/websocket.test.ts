/**
 * WebSocket upgrades through meshd (http-proxy-3 relays the handshake and splices the sockets),
 * on one host and across hosts over mTLS, where the handshake must never travel in clear text.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage, Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { closedPort, startBackend, startRawBackend, type Backend } from '../helpers/backend.ts';
import { DOMAIN, newCa, tlsBlock, writeHost } from '../helpers/pki.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { metricValue, request, sleep } from '../helpers/http.ts';
import { openWebSocket, serveWebSocketEcho } from '../helpers/websocket.ts';

describe('WebSocket upgrades', () => {
  let ws: Backend;
  let mute: Backend;
  let meshd: RunningDaemon;

  before(async () => {
    ws = await startBackend();
    serveWebSocketEcho(ws.server as import('node:http').Server);
    const dead = await closedPort();
    // Accepts and never answers: the handshake must end at the service timeout.
    mute = await startRawBackend((socket) => socket.on('error', () => {}));
    meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  chat: { endpoints: [ { address: ${ws.address} } ] }
  narrow: { endpoints: [ { address: ${ws.address} } ], limits: { maxInFlight: 1 } }
  mute: { endpoints: [ { address: ${mute.address} } ], timeout: 500ms, retries: { attempts: 1 } }
  gone: { endpoints: [ { address: 127.0.0.1:${dead} } ] }
  nobody: {}
`);
  });

  after(async () => {
    await meshd.stop();
    await ws.close();
    await mute.close();
  });

  it("holds tunnels to the service's in-flight limit and ends a handshake no one answers at the service timeout", async () => {
    const first = await openWebSocket(meshd.outbound, 'narrow');
    assert.equal(first.status, 101);
    const second = await openWebSocket(meshd.outbound, 'narrow');
    assert.equal(second.status, 503, second.responseHead);
    assert.match(second.responseHead, /x-meshd-error: overloaded/);
    assert.match(second.responseHead, /retry-after: 1/);
    first.close();
    await sleep(100);
    const third = await openWebSocket(meshd.outbound, 'narrow');
    assert.equal(third.status, 101, 'the place is free again once the tunnel closed');
    third.close();
    const started = Date.now();
    const silent = await openWebSocket(meshd.outbound, 'mute');
    assert.equal(silent.status, 504, silent.responseHead);
    assert.match(silent.responseHead, /x-meshd-error: upstream_timeout/);
    assert.ok(Date.now() - started < 5_000, 'answered at the service timeout, not left hanging');
  });

  it('relays the handshake and frames both ways, and counts the tunnel as in flight', async () => {
    const client = await openWebSocket(meshd.outbound, 'chat');
    assert.equal(client.status, 101, client.responseHead);
    assert.match(client.responseHead, /x-seen-host: chat/i);
    client.send('hello');
    assert.equal(await client.receive(), 'echo:hello');
    client.send('again');
    assert.equal(await client.receive(), 'echo:again');
    const state = (await request(meshd.admin, { path: '/debug/state' })).json() as { services: { name: string; endpoints: { inFlight: number }[] }[] };
    assert.equal(state.services.find((s) => s.name === 'chat')?.endpoints[0]?.inFlight, 1);
    client.close();
    await sleep(100);
    const after = (await request(meshd.admin, { path: '/debug/state' })).json() as { services: { name: string; endpoints: { inFlight: number }[] }[] };
    assert.equal(after.services.find((s) => s.name === 'chat')?.endpoints[0]?.inFlight, 0);
    const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_requests_total', { service: 'chat', code_class: '1xx' }) >= 1);
  });

  it('answers upgrades it cannot relay with meshd errors', async () => {
    const unknown = await openWebSocket(meshd.outbound, 'nosuch');
    assert.equal(unknown.status, 404);
    assert.match(unknown.responseHead, /x-meshd-error: unknown_service/);
    const empty = await openWebSocket(meshd.outbound, 'nobody');
    assert.equal(empty.status, 503);
    assert.match(empty.responseHead, /x-meshd-error: no_endpoints/);
    const refused = await openWebSocket(meshd.outbound, 'gone');
    assert.equal(refused.status, 502);
    assert.match(refused.responseHead, /x-meshd-error: connect_failed/);
    assert.equal((await request(meshd.outbound, { headers: { host: 'chat' } })).status, 200, 'plain requests still served');
  });
});

describe('WebSocket across hosts over mTLS', () => {
  let dir: string;
  let ws: Backend;
  let sniffer: Backend;
  let A: RunningDaemon;
  let B: RunningDaemon;
  let identityA: string;
  const handshakes: IncomingMessage[] = [];
  const sniffed: Buffer[] = [];
  const probes: IncomingMessage['headers'][] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-ws-mtls-'));
    const ca = await newCa();
    const a = await writeHost(dir, 'a', ca, ca.certPem);
    const b = await writeHost(dir, 'b', ca, ca.certPem);
    identityA = a.identity;
    ws = await startBackend((req, res) => {
      if (req.url === '/healthz') probes.push(req.headers);
      res.end('ok');
    });
    serveWebSocketEcho(ws.server as Server, (req) => handshakes.push(req));
    // A plain TCP listener posing as a meshd: whatever it receives is what an eavesdropper would see.
    sniffer = await startRawBackend((socket) => {
      socket.on('data', (d: Buffer) => sniffed.push(d));
      socket.on('error', () => {});
      setTimeout(() => socket.destroy(), 200);
    });
    B = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0 }
${tlsBlock(b.dir)}
local:
  chat: { target: ${ws.address}, allow: [ "${a.identity}" ] }
  closed: { target: ${ws.address}, allow: [ "spiffe://${DOMAIN}/host/nobody" ] }
`);
    const inbound = (await B.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'inbound'))['address'] as string;
    A = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
${tlsBlock(a.dir)}
services:
  chat:
    endpoints: [ { address: ${inbound}, identity: ${b.identity} } ]
    healthCheck: { http: { path: /healthz }, interval: 200ms, unhealthyThreshold: 2, healthyThreshold: 1 }
  closed: { endpoints: [ { address: ${inbound}, identity: ${b.identity} } ] }
  impostor:
    endpoints: [ { address: ${inbound}, identity: "spiffe://${DOMAIN}/host/zzz" } ]
    healthCheck: { http: { path: /healthz }, interval: 200ms, unhealthyThreshold: 2, healthyThreshold: 1 }
  sniffed: { endpoints: [ { address: ${sniffer.address}, identity: ${b.identity} } ], retries: { attempts: 1 } }
`);
  });

  after(async () => {
    await A.stop();
    await B.stop();
    await Promise.all([ws.close(), sniffer.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('carries the upgrade over mTLS; the app sees the verified caller, never a spoofed one', async () => {
    const client = await openWebSocket(A.outbound, 'chat', '/ws', {
      authorization: 'Bearer secret',
      'x-meshd-peer-identity': 'spiffe://evil/x',
      X_Meshd_Peer_Identity: 'spiffe://evil/y',
    });
    assert.equal(client.status, 101, client.responseHead);
    client.send('over mTLS');
    assert.equal(await client.receive(), 'echo:over mTLS');
    client.close();
    const seen = handshakes.at(-1)!;
    assert.equal(seen.headers['x-meshd-peer-identity'], identityA);
    assert.ok(!seen.rawHeaders.some((h) => /^x_meshd/i.test(h)), 'the underscore spelling is dropped');
    assert.equal(seen.headers['authorization'], 'Bearer secret', 'end-to-end fields reach the app');
    assert.match(String(seen.headers['via']), /meshd/);
  });

  it('serves a real client (python websockets) across the mTLS hop', async () => {
    const script = fileURLToPath(new URL('../helpers/ws-client.py', import.meta.url));
    // Debian's python3 carries the websockets package (python3-websockets).
    const out = await new Promise<string>((resolve, reject) =>
      execFile('/usr/bin/python3', [script, A.outbound, 'chat', 'one', 'two'], { timeout: 20_000 }, (err, stdout, stderr) =>
        err === null ? resolve(stdout) : reject(new Error(`${err.message}\n${stderr}`)),
      ),
    );
    assert.deepEqual(out.trim().split('\n'), ['echo:one', 'echo:two']);
  });

  it('never sends the handshake in clear text, and refuses a server with the wrong identity', async () => {
    const client = await openWebSocket(A.outbound, 'sniffed', '/ws', { authorization: 'Bearer secret' });
    assert.equal(client.status, 502, client.responseHead);
    assert.match(client.responseHead, /x-meshd-error: connect_failed/);
    const bytes = Buffer.concat(sniffed);
    assert.ok(bytes.length > 0, 'meshd did connect');
    assert.equal(bytes[0], 0x16, 'the first byte is a TLS handshake record');
    assert.ok(!bytes.includes('GET /ws') && !bytes.includes('Bearer secret'), 'no byte of the handshake in clear text');
    const impostor = await openWebSocket(A.outbound, 'impostor', '/ws');
    assert.equal(impostor.status, 502);
    assert.match(impostor.responseHead, /x-meshd-error: connect_failed/);
    await A.waitForLog((l) => l['service'] === 'impostor' && l['code'] === 'connect_failed');
  });

  it("applies the receiving host's policy to upgrades", async () => {
    const refused = await openWebSocket(A.outbound, 'closed', '/ws');
    assert.equal(refused.status, 403);
    assert.match(refused.responseHead, /x-meshd-error: forbidden/);
  });

  it('health-checks an endpoint that is another meshd over mTLS, with its identity', async () => {
    await sleep(1_500);
    const state = (await request(A.admin, { path: '/debug/state' })).json() as { services: { name: string; endpoints: { state: string }[] }[] };
    const of = (name: string): string | undefined => state.services.find((s) => s.name === name)?.endpoints[0]?.state;
    assert.equal(of('chat'), 'active', 'the probe reaches the app behind the other meshd');
    assert.equal(of('impostor'), 'unhealthy', 'a server with the wrong identity fails the probe');
    assert.ok(
      probes.some((h) => h['x-meshd-peer-identity'] === identityA && h['user-agent'] === 'meshd-health-check'),
      'probes arrive through the other meshd, from this host',
    );
  });
});
