/**
 * The outbound data path end to end: real meshd process, real backends, real
 * clients (Node's http and curl).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { closedPort, startBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { metricValue, request, splitAddress } from '../helpers/http.ts';

const run = promisify(execFile);

describe('outbound HTTP proxy', () => {
  let a: Backend;
  let b: Backend;
  let hang: Backend;
  let stream: Backend;
  let meshd: RunningDaemon;

  before(async () => {
    a = await startBackend();
    b = await startBackend();
    hang = await startBackend(() => {}); // never answers
    // Echoes the request body back as it arrives, and hashes what it got.
    stream = await startBackend((req, res) => {
      const hash = createHash('sha256');
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.on('data', (c: Buffer) => {
        hash.update(c);
        res.write(c);
      });
      req.on('end', () => res.end());
    });
    const dead = await closedPort();
    meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    endpoints:
      - { address: ${a.address}, zone: a }
      - { address: ${b.address}, zone: b }
    balancer: { algorithm: round-robin }
  empty: {}
  dead:
    endpoints: [ { address: 127.0.0.1:${dead} } ]
    connectTimeout: 500ms
  slow:
    endpoints: [ { address: ${hang.address} } ]
    timeout: 300ms
  stream:
    endpoints: [ { address: ${stream.address} } ]
`);
  });

  after(async () => {
    await meshd.stop();
    await Promise.all([a.close(), b.close(), hang.close(), stream.close()]);
  });

  it('routes by Host header (port ignored) and balances round robin', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 6; i++) {
      const reply = await request(meshd.outbound, { path: `/x?i=${i}`, headers: { host: 'users:8080' } });
      assert.equal(reply.status, 200);
      const body = reply.json() as { port: number; url: string };
      assert.equal(body.url, `/x?i=${i}`);
      ports.push(body.port);
    }
    assert.equal(ports.filter((p) => p === a.port).length, 3);
    assert.equal(ports.filter((p) => p === b.port).length, 3);
    for (let i = 1; i < ports.length; i++) assert.notEqual(ports[i], ports[i - 1], 'round robin alternates');
  });

  it('accepts absolute-form requests as an HTTP proxy (curl with HTTP_PROXY)', async () => {
    const { stdout } = await run('curl', ['-sS', '--max-time', '5', 'http://users/via-proxy?q=1'], {
      env: { ...process.env, http_proxy: `http://${meshd.outbound}`, HTTP_PROXY: `http://${meshd.outbound}`, NO_PROXY: '' },
    });
    const body = JSON.parse(stdout) as { url: string; headers: Record<string, string> };
    assert.equal(body.url, '/via-proxy?q=1');
    assert.equal(body.headers['host'], 'users');
  });

  it('strips hop-by-hop headers and appends forwarding headers', async () => {
    const reply = await request(meshd.outbound, {
      headers: {
        host: 'users',
        connection: 'keep-alive, x-hop',
        'x-hop': 'secret',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'x-forwarded-for': '203.0.113.9',
        'x-end-to-end': 'kept',
      },
    });
    const headers = (reply.json() as { headers: Record<string, string> }).headers;
    assert.equal(headers['x-hop'], undefined);
    assert.equal(headers['keep-alive'], undefined);
    assert.equal(headers['proxy-authorization'], undefined);
    assert.equal(headers['x-end-to-end'], 'kept');
    assert.equal(headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.match(headers['forwarded'] ?? '', /for=127\.0\.0\.1;proto=http$/);
    assert.match(headers['via'] ?? '', /1\.1 meshd/);
    assert.match(String(reply.headers['via']), /1\.1 meshd/);
  });

  it('answers an unknown service with 404 unknown_service', async () => {
    const reply = await request(meshd.outbound, { headers: { host: 'nosuch' } });
    assert.equal(reply.status, 404);
    assert.equal(reply.headers['x-meshd-error'], 'unknown_service');
    assert.equal((reply.json() as Record<string, unknown>)['error'], 'unknown_service');
  });

  it('answers a service without endpoints with 503 no_endpoints and Retry-After', async () => {
    const reply = await request(meshd.outbound, { headers: { host: 'empty' } });
    assert.equal(reply.status, 503);
    assert.equal(reply.headers['x-meshd-error'], 'no_endpoints');
    assert.equal(reply.headers['retry-after'], '1');
  });

  it('answers a refused connection with 502 connect_failed', async () => {
    const reply = await request(meshd.outbound, { headers: { host: 'dead' } });
    assert.equal(reply.status, 502);
    assert.equal(reply.headers['x-meshd-error'], 'connect_failed');
  });

  it('answers a backend that never responds with 504 upstream_timeout', async () => {
    const reply = await request(meshd.outbound, { headers: { host: 'slow' } });
    assert.equal(reply.status, 504);
    assert.equal(reply.headers['x-meshd-error'], 'upstream_timeout');
    assert.equal((reply.json() as Record<string, unknown>)['error'], 'upstream_timeout');
  });

  it('streams a large request and response body without buffering them whole', async () => {
    const size = 32 * 1024 * 1024;
    const [host, port] = splitAddress(meshd.outbound);
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let received = 0;
    let firstByteBeforeUploadDone = false;
    let uploadDone = false;
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(
        { host, port, method: 'POST', path: '/upload', headers: { host: 'stream', 'content-type': 'application/octet-stream' }, agent: false },
        (res) => {
          res.on('data', (c: Buffer) => {
            if (!uploadDone) firstByteBeforeUploadDone = true;
            received += c.length;
            got.update(c);
          });
          res.on('end', resolve);
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      let written = 0;
      const chunk = randomBytes(64 * 1024);
      const pump = (): void => {
        while (written < size) {
          written += chunk.length;
          sent.update(chunk);
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        uploadDone = true;
        req.end();
      };
      pump();
    });
    assert.equal(received, size);
    assert.equal(got.digest('hex'), sent.digest('hex'));
    assert.ok(firstByteBeforeUploadDone, 'response bytes arrived while the upload was still going: streamed, not buffered');
  });

  it('counts requests in /metrics with service, endpoint and status class', async () => {
    const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_requests_total', { service: 'users', endpoint: a.address, code_class: '2xx' }) >= 3);
    assert.ok(metricValue(metrics, 'meshd_requests_total', { service: '_unknown', code_class: '4xx' }) >= 1);
    assert.ok(metricValue(metrics, 'meshd_requests_total', { service: 'empty', endpoint: 'none', code_class: '5xx' }) >= 1);
    assert.ok(metricValue(metrics, 'meshd_request_duration_seconds_count', { service: 'users' }) >= 6);
    assert.equal(metricValue(metrics, 'meshd_endpoints', { service: 'users', state: 'active' }), 2);
    assert.match(metrics, /meshd_inflight_requests\{service="users"\} 0/);
    assert.match(metrics, /meshd_process_cpu_seconds_total/);
    // Complete responses are not resets (end() may precede 'finish').
    assert.equal(metricValue(metrics, 'meshd_resets_total', { service: 'users', side: 'upstream' }), 0);
    assert.equal(metricValue(metrics, 'meshd_resets_total', { service: 'stream', side: 'upstream' }), 0);
  });

  it('shows services and endpoint observations in /debug/state', async () => {
    const state = (await request(meshd.admin, { path: '/debug/state' })).json() as {
      services: {
        name: string;
        endpoints: { address: string; zone: string; inFlight: number; stats: { ewmaLatencyMs: number; windowSuccessRate: number } }[];
      }[];
    };
    const users = state.services.find((s) => s.name === 'users');
    assert.ok(users);
    assert.equal(users.endpoints.length, 2);
    const ea = users.endpoints.find((e) => e.address === a.address);
    assert.equal(ea?.zone, 'a');
    assert.equal(ea.inFlight, 0);
    assert.ok(ea.stats.ewmaLatencyMs > 0);
    assert.equal(ea.stats.windowSuccessRate, 1);
    const dead = state.services.find((s) => s.name === 'dead');
    assert.equal(dead?.endpoints[0]?.stats.windowSuccessRate, 0);
  });

  it('serves /healthz and /readyz', async () => {
    assert.equal((await request(meshd.admin, { path: '/healthz' })).status, 200);
    const ready = await request(meshd.admin, { path: '/readyz' });
    assert.equal(ready.status, 200);
    assert.equal((ready.json() as Record<string, unknown>)['ready'], true);
  });
});
