/** WebSocket upgrades through meshd (http-proxy-3 relays the handshake and splices the sockets). */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { closedPort, startBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { metricValue, request, sleep } from '../helpers/http.ts';
import { openWebSocket, serveWebSocketEcho } from '../helpers/websocket.ts';

describe('WebSocket upgrades', () => {
  let ws: Backend;
  let meshd: RunningDaemon;

  before(async () => {
    ws = await startBackend();
    serveWebSocketEcho(ws.server as import('node:http').Server);
    const dead = await closedPort();
    meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  chat: { endpoints: [ { address: ${ws.address} } ] }
  gone: { endpoints: [ { address: 127.0.0.1:${dead} } ] }
  nobody: {}
`);
  });

  after(async () => {
    await meshd.stop();
    await ws.close();
  });

  it('relays the handshake and frames both ways, and counts the tunnel as in flight', async () => {
    const client = await openWebSocket(meshd.outbound, 'chat');
    assert.equal(client.status, 101, client.responseHead);
    assert.match(client.responseHead, /x-seen-host: chat/i);
    client.send('hello');
    assert.equal(await client.receive(), 'echo:hello');
    client.send('again');
    assert.equal(await client.receive(), 'echo:again');
    const state = (await request(meshd.admin, { path: '/debug/state' })).json<{ services: { name: string; endpoints: { inFlight: number }[] }[] }>();
    assert.equal(state.services.find((s) => s.name === 'chat')?.endpoints[0]?.inFlight, 1);
    client.close();
    await sleep(100);
    const after = (await request(meshd.admin, { path: '/debug/state' })).json<{ services: { name: string; endpoints: { inFlight: number }[] }[] }>();
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
