/** Raw TCP listeners: a loopback port per service, balanced per connection. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { closedPort, startRawBackend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { tcpRoundTrip } from '../helpers/tcp.ts';
import { metricValue, request } from '../helpers/http.ts';

describe('TCP listeners', () => {
  it('carries a TCP conversation to the endpoints, balancing connections and skipping a dead one', async () => {
    // Echo with the backend's port, after the client half-closes: exercises half-close both ways.
    const echo = (tag: string) =>
      startRawBackend((socket) => {
        let got = '';
        socket.on('data', (d: Buffer) => (got += d.toString()));
        socket.on('end', () => socket.end(`${tag}:${got}`));
      });
    const a = await echo('a');
    const b = await echo('b');
    const dead = await closedPort();
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  db:
    endpoints: [ { address: ${a.address} }, { address: ${b.address} }, { address: 127.0.0.1:${dead} } ]
    balancer: { algorithm: round-robin }
    tcp: { listen: 127.0.0.1:0 }
`);
    try {
      const line = await meshd.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'tcp');
      const address = line['address'] as string;
      const replies = [];
      for (let i = 0; i < 9; i++) replies.push(await tcpRoundTrip(address, `ping ${i}`));
      for (let i = 0; i < 9; i++) assert.match(replies[i]!, new RegExp(`^[ab]:ping ${i}$`));
      assert.ok(replies.some((r) => r.startsWith('a:')) && replies.some((r) => r.startsWith('b:')), 'both live endpoints used');
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.equal(metricValue(metrics, 'meshd_tcp_connections_total', { service: 'db', result: 'connected' }), 9);
      assert.ok(metricValue(metrics, 'meshd_tcp_connections_total', { service: 'db', result: 'connect_failed' }) >= 1);
      assert.equal((await request(meshd.admin, { path: '/healthz' })).status, 200);
    } finally {
      await meshd.stop();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('accepts only callers inside tcp.allowFrom, following reloads', async () => {
    const echo = await startRawBackend((socket) => {
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString()));
      socket.on('end', () => socket.end(`echo:${got}`));
    });
    const config = (range: string): string => `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  db:
    endpoints: [ { address: ${echo.address} } ]
    tcp: { listen: 127.0.0.1:0, allowFrom: [ ${range} ] }
`;
    const meshd = await startDaemon(config('127.0.0.2/32'));
    try {
      const address = (await meshd.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'tcp'))['address'] as string;
      assert.equal(await tcpRoundTrip(address, 'hi', '127.0.0.2'), 'echo:hi');
      assert.equal(await tcpRoundTrip(address, 'hi', '127.0.0.1').catch(() => ''), '', 'a caller outside the range gets nothing');
      await meshd.waitForLog((l) => l.msg === 'connection from a source outside tcp.allowFrom refused' && l['remote'] === '127.0.0.1');
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.equal(metricValue(metrics, 'meshd_tcp_connections_total', { service: 'db', result: 'source_refused' }), 1);
      assert.equal(echo.hits, 1, 'the refused caller never reached the endpoint');
      const from = meshd.logs.length;
      // Same listener address, new range: the listener stays and its filter changes.
      meshd.writeConfig(config('127.0.0.1/32'));
      await meshd.waitForLog((l) => l.msg === 'config reloaded', 10_000, from);
      assert.equal(await tcpRoundTrip(address, 'again', '127.0.0.1'), 'echo:again');
    } finally {
      await meshd.stop();
      await echo.close();
    }
  });
});
