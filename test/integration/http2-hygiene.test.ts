/**
 * What HTTP/2 forbids never crosses into an HTTP/2 hop: one caller's
 * connection-specific fields (HTTP2-Settings, TE: gzip, Keep-Alive…) must not
 * tear down the multiplexed session that every caller shares, and an HTTP/1.1
 * upstream's repeated single-value fields must not fail an HTTP/2 caller's
 * answer. Real clients: h2load for the shared load, curl for the odd requests.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer as createH2Server, connect as h2connect, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startBackend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { metricValue, request } from '../helpers/http.ts';

const run = promisify(execFile);

describe('HTTP/2 field hygiene', () => {
  it("keeps every caller's h2c session to an endpoint alive when one caller sends fields HTTP/2 forbids", async () => {
    const seen: string[] = [];
    let sessions = 0;
    const server: Http2Server = createH2Server((req, res) => {
      for (const name of Object.keys(req.headers))
        if (/http2-settings|^te$|keep-alive|upgrade|connection/.test(name)) seen.push(`${name}: ${String(req.headers[name])}`);
      res.end('ok');
    });
    server.on('session', () => sessions++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    protocol: h2c
    pool: { maxConnections: 1 }
    endpoints: [ { address: 127.0.0.1:${(server.address() as AddressInfo).port} } ]
`);
    try {
      const load = run('h2load', ['-n', '4000', '-c', '4', '-m', '10', '-H', ':authority: users', `http://${meshd.outbound}/`], { timeout: 60_000 });
      const odd = [
        ['-H', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', '-H', 'Connection: Upgrade, HTTP2-Settings', '-H', 'Upgrade: h2c'],
        ['-H', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'],
        ['-H', 'TE: gzip'],
        ['-H', 'Keep-Alive: timeout=5'],
        ['-H', 'Proxy-Connection: keep-alive'],
      ];
      const statuses: string[] = [];
      for (let i = 0; i < 10; i++) {
        const { stdout } = await run(
          'curl',
          ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: users', ...odd[i % odd.length]!, `http://${meshd.outbound}/odd`],
          { timeout: 10_000 },
        );
        statuses.push(stdout);
      }
      const { stdout } = await load;
      assert.deepEqual(statuses, Array(10).fill('200'), 'the odd requests are served, their forbidden fields dropped');
      assert.match(stdout, /requests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored/, stdout);
      assert.match(stdout, /status codes: 4000 2xx/, stdout);
      assert.deepEqual(seen, [], 'nothing HTTP/2 forbids reached the endpoint');
      assert.equal(sessions, 1, 'the one shared session was never torn down');
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.equal(metricValue(metrics, 'meshd_requests_total', { service: 'users', code_class: '5xx' }), 0);
      assert.equal(
        metricValue(metrics, 'meshd_feedback_decisions_total', { service: 'users', decision: 'eject' }),
        0,
        'no false failures fed the feedback loop',
      );
    } finally {
      await meshd.stop();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('answers an HTTP/2 caller whose HTTP/1.1 upstream repeats single-value fields', async () => {
    const backend = await startBackend((_req, res) => {
      // Raw header lines: node:http would merge or refuse these, an HTTP/1.1 peer may send them.
      res.socket!.end(
        'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-type: text/html\r\nlocation: /a\r\nlocation: /b\r\netag: "1"\r\netag: "2"\r\nx-list: a\r\nx-list: b\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nhttp2-settings: AAMA\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok',
      );
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users: { endpoints: [ { address: ${backend.address} } ] }
`);
    try {
      const reply = await new Promise<{ headers: Record<string, unknown>; body: string }>((resolve, reject) => {
        const session = h2connect(`http://${meshd.outbound}`);
        session.on('error', reject);
        const stream = session.request({ ':path': '/', ':authority': 'users' });
        let headers: Record<string, unknown> = {};
        let body = '';
        stream.on('response', (h) => (headers = h));
        stream.on('data', (d: Buffer) => (body += d.toString()));
        stream.on('end', () => {
          session.close();
          resolve({ headers, body });
        });
        stream.on('error', reject);
      });
      assert.equal(reply.headers[':status'], 200);
      assert.equal(reply.body, 'ok');
      assert.equal(reply.headers['content-type'], 'text/plain');
      assert.equal(reply.headers['location'], '/a');
      assert.equal(reply.headers['etag'], '"1"');
      assert.deepEqual(reply.headers['set-cookie'], ['a=1', 'b=2']);
      assert.equal(reply.headers['http2-settings'], undefined);
      const { stdout } = await run(
        'curl',
        ['-s', '--http2-prior-knowledge', '-H', 'Host: users', '-o', '/dev/null', '-w', '%{http_code}', `http://${meshd.outbound}/`],
        { timeout: 10_000 },
      );
      assert.equal(stdout, '200');
    } finally {
      await meshd.stop();
      await backend.close();
    }
  });
});
