/**
 * Limits that one client must not be able to exhaust: the admin listener's
 * connection cap against a slowloris (the liveness probe still gets in), the
 * admin API's Host check against DNS rebinding, and HTTP/2's per-connection
 * stream limit (one connection cannot hold the daemon's whole in-flight
 * ceiling).
 */
import assert from 'node:assert/strict';
import { connect as h2connect } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { startBackend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { request, sleep, splitAddress } from '../helpers/http.ts';

describe('limits one client cannot exhaust', () => {
  it('keeps /healthz answering while slow clients hold every admin connection', async () => {
    const meshd = await startDaemon('admin: { listen: 127.0.0.1:0, maxConnections: 8 }\noutbound: { listen: 127.0.0.1:0 }\n');
    const [host, port] = splitAddress(meshd.admin);
    const slow: Socket[] = [];
    try {
      // Twice the cap, each sending half a request head and then a byte now and then.
      for (let i = 0; i < 16; i++) {
        const s = connect(port, host);
        s.on('error', () => {});
        s.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n');
        slow.push(s);
      }
      await sleep(200);
      const trickle = setInterval(() => {
        for (const s of slow) if (!s.destroyed) s.write('X-Slow: 1\r\n');
      }, 100);
      try {
        for (let i = 0; i < 5; i++) {
          const started = Date.now();
          const res = await request(meshd.admin, { path: '/healthz' });
          assert.equal(res.status, 200);
          assert.ok(Date.now() - started < 1_000, 'answered at once, not after a header timeout');
        }
      } finally {
        clearInterval(trickle);
      }
      assert.ok(slow.filter((s) => s.destroyed).length >= 8, 'slow connections gave way to the probes');
    } finally {
      for (const s of slow) s.destroy();
      await meshd.stop();
    }
  });

  it('answers the admin API only for IP literals, localhost and configured names', async () => {
    const meshd = await startDaemon('admin: { listen: 127.0.0.1:0, allowHosts: [ meshd-admin.internal ] }\noutbound: { listen: 127.0.0.1:0 }\n');
    try {
      const [, port] = splitAddress(meshd.admin);
      for (const host of [`127.0.0.1:${port}`, 'localhost', `LOCALHOST:${port}`, '[::1]:9990', 'meshd-admin.internal']) {
        assert.equal((await request(meshd.admin, { path: '/debug/state', headers: { host } })).status, 200, host);
      }
      for (const host of ['attacker.example', `rebind.attacker.example:${port}`, 'localhost.attacker.example']) {
        const res = await request(meshd.admin, { path: '/debug/state', headers: { host } });
        assert.equal(res.status, 403, host);
        assert.doesNotMatch(res.body, /services/, 'no state leaks');
      }
    } finally {
      await meshd.stop();
    }
  });

  it('limits the streams one HTTP/2 connection may have open, and serves the rest as streams finish', async () => {
    let open = 0;
    let peak = 0;
    const backend = await startBackend((_req, res) => {
      open++;
      peak = Math.max(peak, open);
      setTimeout(() => {
        open--;
        res.end('ok');
      }, 300);
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0, http2: { maxConcurrentStreams: 10 } }
services:
  api: { endpoints: [ { address: ${backend.address} } ] }
`);
    const session = h2connect(`http://${meshd.outbound}`);
    try {
      await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
      assert.equal(session.remoteSettings.maxConcurrentStreams, 10);
      const statuses = await Promise.all(
        Array.from(
          { length: 30 },
          () =>
            new Promise<number>((resolve, reject) => {
              const stream = session.request({ ':path': '/', ':authority': 'api' });
              stream.on('response', (h) => resolve(Number(h[':status'])));
              stream.on('error', reject);
              stream.resume();
            }),
        ),
      );
      assert.deepEqual(new Set(statuses), new Set([200]));
      assert.ok(peak <= 10, `at most 10 requests of one connection in flight upstream, saw ${peak}`);
    } finally {
      session.close();
      await meshd.stop();
      await backend.close();
    }
  });
});
