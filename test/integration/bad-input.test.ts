/**
 * Bad input from the network: each gets a clear error code (or a counted
 * reset) and the daemon keeps serving afterwards.
 */
import assert from 'node:assert/strict';
import { connect as h2connect } from 'node:http2';
import { request as httpRequest, Agent } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startBackend, startRawBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { metricValue, request, sleep, splitAddress } from '../helpers/http.ts';

/** Writes raw bytes and collects whatever comes back until the server closes. */
function rawExchange(address: string, bytes: string | Buffer, timeoutMs = 5_000): Promise<string> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve) => {
    const socket = connect(port, host);
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => resolve(got));
    socket.setTimeout(timeoutMs, () => socket.destroy());
    socket.write(bytes);
  });
}

async function assertStillServing(meshd: RunningDaemon): Promise<void> {
  const reply = await request(meshd.outbound, { headers: { host: 'ok' } });
  assert.equal(reply.status, 200, 'daemon still proxies after the bad input');
}

describe('bad input on the outbound listener', () => {
  let ok: Backend;
  let streaming: Backend;
  let reset: Backend;
  let garbage: Backend;
  let halfway: Backend;
  let meshd: RunningDaemon;
  let streamingClosedEarly = 0;

  before(async () => {
    ok = await startBackend();
    // Sends one chunk every 50 ms for up to 5 s; notes when the response is torn down early.
    streaming = await startBackend((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let n = 0;
      const timer = setInterval(() => {
        res.write(`chunk ${n++}\n`);
        if (n >= 100) {
          clearInterval(timer);
          res.end();
        }
      }, 50);
      res.on('close', () => {
        clearInterval(timer);
        if (!res.writableFinished) streamingClosedEarly++;
      });
    });
    reset = await startRawBackend((socket) => socket.once('data', () => socket.resetAndDestroy()));
    garbage = await startRawBackend((socket) => socket.once('data', () => socket.end('SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02 not http at all\r\n\r\n')));
    halfway = await startRawBackend((socket) =>
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\npartial body');
        setTimeout(() => socket.resetAndDestroy(), 50);
      }),
    );
    meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0, maxHeaderSize: 8KiB, headersTimeout: 1s }
log: { access: { enabled: true, sampleRatio: 0 } }
services:
  ok: { endpoints: [ { address: ${ok.address} } ] }
  streaming: { endpoints: [ { address: ${streaming.address} } ] }
  reset: { endpoints: [ { address: ${reset.address} } ] }
  garbage: { endpoints: [ { address: ${garbage.address} } ] }
  halfway: { endpoints: [ { address: ${halfway.address} } ] }
`);
  });

  after(async () => {
    await meshd.stop();
    await Promise.all([ok, streaming, reset, garbage, halfway].map((b) => b.close()));
  });

  it('answers a malformed request line with 400 bad_request', async () => {
    const reply = await rawExchange(meshd.outbound, 'GET / HTTP/1.1 EXTRA JUNK\r\nHost: ok\r\n\r\n');
    assert.match(reply, /^HTTP\/1\.1 400 /);
    assert.match(reply, /x-meshd-error: bad_request/);
    assert.match(reply, /"error":"bad_request"/);
    await assertStillServing(meshd);
  });

  it('refuses a request target with a fragment (#) on every path: rules would judge another path than the app serves', async () => {
    for (const bytes of [
      'GET /admin#x HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n',
      'GET http://ok/admin#x HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n',
      'GET /admin#x HTTP/1.1\r\nHost: ok\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    ]) {
      const reply = await rawExchange(meshd.outbound, bytes);
      assert.match(reply, /^HTTP\/1\.1 400 /, bytes);
      assert.match(reply, /x-meshd-error: bad_request/);
    }
    const session = h2connect(`http://${meshd.outbound}`);
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ':path': '/admin#x', ':authority': 'ok' });
        stream.on('response', (h) => resolve(Number(h[':status'])));
        stream.on('error', reject);
        stream.end();
      });
      assert.equal(status, 400);
    } finally {
      session.close();
    }
    await assertStillServing(meshd);
  });

  it('HTTP/2: applies the header size limit as HTTP/1.1 does, and refuses an :authority that Host contradicts', async () => {
    const session = h2connect(`http://${meshd.outbound}`);
    const ask = (headers: Record<string, string>): Promise<[number, string | undefined]> =>
      new Promise((resolve, reject) => {
        const stream = session.request({ ':path': '/', ...headers });
        stream.on('response', (h) => resolve([Number(h[':status']), h['x-meshd-error'] as string | undefined]));
        stream.on('error', reject);
        stream.resume();
        stream.end();
      });
    try {
      assert.deepEqual(await ask({ ':authority': 'ok', 'x-big': 'a'.repeat(20_000) }), [431, 'headers_too_large']);
      assert.deepEqual(await ask({ ':authority': 'ok', host: 'streaming' }), [400, 'bad_request']);
      assert.deepEqual(await ask({ ':authority': 'ok', host: 'ok' }), [200, undefined]);
    } finally {
      session.close();
    }
    await assertStillServing(meshd);
  });

  it('answers an HTTP/1.1 request without Host as its own error, 400 bad_request', async () => {
    const reply = await rawExchange(meshd.outbound, 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n');
    assert.match(reply, /^HTTP\/1\.1 400 /);
    assert.match(reply, /x-meshd-error: bad_request/);
    assert.match(reply, /missing Host header/);
    await assertStillServing(meshd);
  });

  it('writes an access line for a request no service takes', async () => {
    const reply = await request(meshd.outbound, { path: '/x?token=secret', headers: { host: 'nosuch' } });
    assert.equal(reply.status, 404);
    const line = await meshd.waitForLog((l) => l['access'] === true && l['service'] === 'nosuch');
    assert.deepEqual([line['listener'], line['status'], line['error'], line['path']], ['outbound', 404, 'unknown_service', '/x']);
  });

  it('answers oversized headers with 431 headers_too_large', async () => {
    const reply = await rawExchange(meshd.outbound, `GET / HTTP/1.1\r\nHost: ok\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(reply, /^HTTP\/1\.1 431 /);
    assert.match(reply, /x-meshd-error: headers_too_large/);
    await assertStillServing(meshd);
  });

  it('answers an oversized request line with 431', async () => {
    const reply = await rawExchange(meshd.outbound, `GET /${'p'.repeat(20_000)} HTTP/1.1\r\nHost: ok\r\n\r\n`);
    assert.match(reply, /^HTTP\/1\.1 431 /);
    await assertStillServing(meshd);
  });

  it('refuses binary garbage with 400 and closes the connection', async () => {
    const reply = await rawExchange(meshd.outbound, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]));
    assert.match(reply, /^HTTP\/1\.1 400 /);
    await assertStillServing(meshd);
  });

  it('times out a client that never finishes its headers with 408', async () => {
    const reply = await rawExchange(meshd.outbound, 'GET / HTTP/1.1\r\nHost: ok\r\n', 8_000);
    assert.match(reply, /^HTTP\/1\.1 408 /);
    assert.match(reply, /x-meshd-error: request_timeout/);
  });

  it('refuses CONNECT with 405 method_not_allowed', async () => {
    const reply = await rawExchange(meshd.outbound, 'CONNECT ok:443 HTTP/1.1\r\nHost: ok:443\r\n\r\n');
    assert.match(reply, /^HTTP\/1\.1 405 /);
    assert.match(reply, /x-meshd-error: method_not_allowed/);
    await assertStillServing(meshd);
  });

  it('refuses https:// absolute-form targets with 400', async () => {
    const reply = await request(meshd.outbound, { path: 'https://ok/', headers: { host: 'ok' } });
    assert.equal(reply.status, 400);
    assert.equal(reply.headers['x-meshd-error'], 'bad_request');
  });

  it('survives a client that disconnects mid-request body', async () => {
    const [host, port] = splitAddress(meshd.outbound);
    const socket: Socket = connect(port, host);
    socket.on('error', () => {});
    await new Promise((r) => socket.once('connect', r));
    socket.write('POST /upload HTTP/1.1\r\nHost: ok\r\nContent-Length: 1000000\r\n\r\n');
    socket.write('x'.repeat(1000));
    await sleep(100);
    socket.destroy();
    await sleep(200);
    const state = (await request(meshd.admin, { path: '/debug/state' })).json() as { inFlight: number };
    assert.equal(state.inFlight, 0, 'the aborted exchange was released');
    // Logged as the caller leaving (Envoy's DC, nginx's 499), not as a malformed request.
    await meshd.waitForLog((l) => l['access'] === true && l['path'] === '/upload' && l['status'] === 499 && l['error'] === 'client_closed');
    await assertStillServing(meshd);
  });

  it('stops the upstream response when the client disconnects mid-response, and counts it', async () => {
    const before = streamingClosedEarly;
    const [host, port] = splitAddress(meshd.outbound);
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host, port, path: '/', headers: { host: 'streaming' }, agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.setTimeout(5_000, () => reject(new Error('no first chunk')));
      req.end();
    });
    for (let i = 0; i < 50 && streamingClosedEarly === before; i++) await sleep(20);
    assert.equal(streamingClosedEarly, before + 1, 'the backend saw its response cut short, promptly');
    await sleep(50);
    const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_resets_total', { service: 'streaming', side: 'client' }) >= 1);
    await assertStillServing(meshd);
  });

  it('answers a backend that resets the connection with 502 upstream_reset', async () => {
    const reply = await request(meshd.outbound, { headers: { host: 'reset' } });
    assert.equal(reply.status, 502);
    assert.equal(reply.headers['x-meshd-error'], 'upstream_reset');
    await assertStillServing(meshd);
  });

  it('answers a backend that sends garbage with 502 upstream_protocol_error', async () => {
    const reply = await request(meshd.outbound, { headers: { host: 'garbage' } });
    assert.equal(reply.status, 502);
    assert.equal(reply.headers['x-meshd-error'], 'upstream_protocol_error');
    await assertStillServing(meshd);
  });

  it('resets the caller when the backend dies mid-response, and counts it', async () => {
    const outcome = await request(meshd.outbound, { headers: { host: 'halfway' } }).then(
      () => 'complete',
      (err: unknown) => (err instanceof Error ? err.message : String(err)),
    );
    assert.notEqual(outcome, 'complete', 'a truncated body must not look complete');
    await sleep(50);
    const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_resets_total', { service: 'halfway', side: 'upstream' }) >= 1);
    // The status line said 200; the access line (always written for an error) says what followed.
    await meshd.waitForLog((l) => l['access'] === true && l['service'] === 'halfway' && l['status'] === 200 && l['error'] === 'upstream_reset');
    await assertStillServing(meshd);
  });

  it('refuses a request with two Host fields with 400 and closes (RFC 9112 §3.2)', async () => {
    const before = ok.hits;
    const reply = await rawExchange(meshd.outbound, 'GET / HTTP/1.1\r\nHost: ok\r\nHost: streaming\r\n\r\nGET / HTTP/1.1\r\nHost: ok\r\n\r\n');
    assert.match(reply, /^HTTP\/1\.1 400 /);
    assert.match(reply, /x-meshd-error: bad_request/i);
    assert.equal(reply.match(/HTTP\/1\.1 /g)?.length, 1, 'nothing else is read from that connection');
    const upgrade = await rawExchange(
      meshd.outbound,
      'GET /ws HTTP/1.1\r\nHost: ok\r\nHost: streaming\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    assert.match(upgrade, /^HTTP\/1\.1 400 /);
    assert.equal(ok.hits, before, 'never forwarded');
    await assertStillServing(meshd);
  });

  it('refuses an HTTP/1.0 request with Transfer-Encoding with 400 and closes (RFC 9112 §6.1)', async () => {
    const before = ok.hits;
    const reply = await rawExchange(
      meshd.outbound,
      'POST / HTTP/1.0\r\nHost: ok\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: ok\r\n\r\n',
    );
    assert.match(reply, /^HTTP\/1\.1 400 /);
    assert.match(reply, /x-meshd-error: bad_request/i);
    assert.match(reply, /connection: close/i);
    assert.equal(reply.match(/HTTP\/1\.1 /g)?.length, 1);
    // Content-Length with Transfer-Encoding: node:http refuses it before meshd sees it.
    const both = await rawExchange(meshd.outbound, 'POST / HTTP/1.1\r\nHost: ok\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
    assert.match(both, /^HTTP\/1\.1 400 /);
    assert.equal(ok.hits, before, 'never forwarded');
    await assertStillServing(meshd);
  });

  it('counts malformed requests by code', async () => {
    const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_client_errors_total', { listener: 'outbound', code: 'bad_request' }) >= 2);
    assert.ok(metricValue(metrics, 'meshd_client_errors_total', { listener: 'outbound', code: 'headers_too_large' }) >= 2);
  });
});

describe('a flood of idle connections beyond the descriptor limit', () => {
  it('refuses the excess fast, keeps admin and established callers working, and recovers', async () => {
    const ok = await startBackend();
    // nofile 256 → reserve 64 → outbound cap (256 − 64) / 2 = 96 connections.
    const meshd = await startDaemon(
      `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  ok: { endpoints: [ { address: ${ok.address} } ] }
`,
      { nofile: 256 },
    );
    const [host, port] = splitAddress(meshd.outbound);
    const established = new Agent({ keepAlive: true, maxSockets: 1 });
    const flood: Socket[] = [];
    try {
      assert.equal((await request(meshd.outbound, { headers: { host: 'ok' }, agent: established })).status, 200);
      let closedByServer = 0;
      for (let i = 0; i < 300; i++) {
        const s = connect(port, host);
        s.on('error', () => {});
        s.on('close', () => closedByServer++);
        flood.push(s);
      }
      await sleep(500);
      assert.ok(closedByServer >= 150, `excess connections were closed at once (${closedByServer} of 300)`);
      assert.equal((await request(meshd.admin, { path: '/healthz' })).status, 200, 'admin still answers');
      assert.equal((await request(meshd.outbound, { headers: { host: 'ok' }, agent: established })).status, 200, 'an established caller still gets through');
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_connections_refused_total', { listener: 'outbound' }) >= 150);
      for (const s of flood) s.destroy();
      await sleep(300);
      assert.equal((await request(meshd.outbound, { headers: { host: 'ok' } })).status, 200, 'new callers are served once the flood ends');
    } finally {
      for (const s of flood) s.destroy();
      established.destroy();
      await meshd.stop();
      await ok.close();
    }
  });
});

describe('outbound source allow-list (never an open proxy)', () => {
  it('refuses connections from sources outside outbound.allowFrom and serves the ones inside, following reloads', async () => {
    const ok = await startBackend();
    const config = (allowFrom: string): string => `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0${allowFrom} }
services:
  ok: { endpoints: [ { address: ${ok.address} } ] }
`;
    const meshd = await startDaemon(config(', allowFrom: [ "127.0.0.2/32", "10.244.0.0/16" ]'));
    const reload = async (yaml: string): Promise<void> => {
      const from = meshd.logs.length;
      meshd.writeConfig(yaml);
      meshd.signal('SIGHUP');
      await meshd.waitForLog((l) => l.msg === 'config reloaded', 10_000, from);
    };
    try {
      const [host, port] = splitAddress(meshd.outbound);
      const from = (localAddress: string): Promise<number | string> =>
        new Promise((resolve) => {
          const req = httpRequest({ host, port, localAddress, headers: { host: 'ok' }, agent: false }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
          req.end();
        });
      assert.equal(await from('127.0.0.2'), 200);
      assert.notEqual(await from('127.0.0.1'), 200);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_connections_refused_total', { listener: 'outbound_source' }) >= 1);
      // Narrowing the list is how an operator shuts a caller out: it applies at the reload.
      await reload(config(', allowFrom: [ "127.0.0.3/32" ]'));
      assert.notEqual(await from('127.0.0.2'), 200);
      assert.equal(await from('127.0.0.3'), 200);
      // Taking the list out never opens the running listener wider: the last list holds until a restart.
      await reload(config(''));
      assert.notEqual(await from('127.0.0.2'), 200);
      assert.equal(await from('127.0.0.3'), 200);
    } finally {
      await meshd.stop();
      await ok.close();
    }
  });
});
