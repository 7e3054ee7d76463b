/**
 * HTTP/2: h2c from local apps on the outbound port (prior knowledge), HTTP/2
 * multiplexed to the endpoints, and gRPC end to end with a real client and
 * server: unary, client-streaming and bidirectional calls, and request bodies
 * that must flow while the response is already coming back.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as h2connect, createServer as createH2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { closedPort, startBackend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { metricValue, request, splitAddress } from '../helpers/http.ts';
import { newCa, tlsBlock, writeHost } from '../helpers/pki.ts';
import { SAY, grpc, grpcClient, startGrpcServer } from '../helpers/grpc.ts';

function h2get(address: string, authority: string, path: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const session = h2connect(`http://${address}`);
    session.on('error', reject);
    const stream = session.request({ ':method': 'GET', ':path': path, ':authority': authority });
    let body = '';
    let headers: Record<string, unknown> = {};
    stream.on('response', (h) => (headers = h));
    stream.on('data', (d: Buffer) => (body += d.toString()));
    stream.on('end', () => {
      session.close();
      resolve({ status: Number(headers[':status']), body, headers });
    });
    stream.on('error', reject);
  });
}

describe('HTTP/2 and gRPC', () => {
  it('serves h2c callers and HTTP/1.1 callers on the same port', async () => {
    const backend = await startBackend();
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users: { endpoints: [ { address: ${backend.address} } ] }
`);
    try {
      const h2 = await h2get(meshd.outbound, 'users', '/over-h2?x=1');
      assert.equal(h2.status, 200);
      const body = JSON.parse(h2.body) as { url: string; headers: Record<string, string> };
      assert.equal(body.url, '/over-h2?x=1');
      assert.equal(body.headers['host'], 'users');
      const unknown = await h2get(meshd.outbound, 'nosuch', '/');
      assert.equal(unknown.status, 404);
      assert.equal(unknown.headers['x-meshd-error'], 'unknown_service');
      assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200);
    } finally {
      await meshd.stop();
      await backend.close();
    }
  });

  it('carries gRPC calls end to end, with trailers, deadlines and status-aware retries', async () => {
    let n = 0;
    const server = await startGrpcServer(async (req, metadata) => {
      n++;
      if (req.text === 'slow') await new Promise((r) => setTimeout(r, 1_000));
      if (req.text === 'flaky' && n % 3 === 0) throw Object.assign(new Error('try again'), { code: grpc.status.UNAVAILABLE, details: 'try again' });
      if (req.text === 'missing') throw Object.assign(new Error('no such thing'), { code: grpc.status.NOT_FOUND, details: 'no such thing' });
      return { text: `hello ${req.text} (timeout header ${String(metadata.get('x-meshd-timeout-ms')[0] ?? 'none')})` };
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  greeter:
    protocol: h2c
    endpoints: [ { address: ${server.address} } ]
`);
    const client = grpcClient(meshd.outbound, 'greeter');
    try {
      const reply = await client.say('world');
      assert.match(reply.text, /^hello world \(timeout header \d+\)$/);
      // UNAVAILABLE (trailers-only) is retried: the caller never sees it.
      for (let i = 0; i < 12; i++) assert.match((await client.say('flaky')).text, /^hello flaky/);
      // Application errors pass through untouched and are not retried.
      const before = server.calls;
      await assert.rejects(client.say('missing'), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND && err.details === 'no such thing');
      assert.equal(server.calls, before + 1);
      // The caller's grpc-timeout bounds the call: meshd answers DEADLINE_EXCEEDED itself.
      await assert.rejects(client.say('slow', 200), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
      const state = (await request(meshd.admin, { path: '/debug/state' })).json() as {
        services: { endpoints: { stats: { total: Record<string, number> } }[] }[];
      };
      assert.ok((state.services[0]?.endpoints[0]?.stats.total['grpc_error'] ?? 0) >= 4, 'UNAVAILABLE counted against the endpoint');
    } finally {
      client.close();
      await meshd.stop();
      await server.close();
    }
  });

  it('counts, logs and traces a gRPC call by its grpc-status: UNAVAILABLE is a 5xx, NOT_FOUND a 4xx, though both are HTTP 200', async () => {
    const server = await startGrpcServer((req) => {
      if (req.text === 'down') return Promise.reject(Object.assign(new Error('down'), { code: grpc.status.INTERNAL, details: 'down' }));
      if (req.text === 'missing') return Promise.reject(Object.assign(new Error('no such thing'), { code: grpc.status.NOT_FOUND, details: 'no such thing' }));
      return Promise.resolve({ text: 'ok' });
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
log: { access: { enabled: true, sampleRatio: 0 } }
services:
  greeter: { protocol: h2c, endpoints: [ { address: ${server.address} } ], retries: { attempts: 1 } }
  dead: { protocol: h2c, endpoints: [ { address: 127.0.0.1:${await closedPort()} } ], retries: { attempts: 1 } }
`);
    const greeter = grpcClient(meshd.outbound, 'greeter');
    const dead = grpcClient(meshd.outbound, 'dead');
    try {
      assert.equal((await greeter.say('fine')).text, 'ok');
      await assert.rejects(greeter.say('down'), (err: grpc.ServiceError) => err.code === grpc.status.INTERNAL);
      await assert.rejects(greeter.say('missing'), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
      // meshd's own answer (connect_failed as UNAVAILABLE) the same way.
      await assert.rejects(dead.say('x'), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      const classes = (service: string): Record<string, number> =>
        Object.fromEntries(['2xx', '4xx', '5xx'].map((c) => [c, metricValue(metrics, 'meshd_requests_total', { service, code_class: c })]));
      assert.deepEqual(classes('greeter'), { '2xx': 1, '4xx': 1, '5xx': 1 });
      assert.deepEqual(classes('dead'), { '2xx': 0, '4xx': 0, '5xx': 1 });
      // The dependency map says what the edge carried, and counts the failure.
      const graph = (await request(meshd.admin, { path: '/debug/graph' })).json() as { edges: { to: string; protocols: string[]; errors: number }[] };
      const edge = graph.edges.find((e) => e.to === 'service:greeter');
      assert.deepEqual([edge?.protocols, edge?.errors], [['grpc'], 1]);
      // Sampled at 0, the failures are logged anyway, with their grpc-status.
      const access = await meshd.waitForLog((l) => l['access'] === true && l['grpcStatus'] === grpc.status.INTERNAL);
      assert.equal(access['status'], 200);
      await meshd.waitForLog((l) => l['access'] === true && l['service'] === 'dead' && l['grpcStatus'] === grpc.status.UNAVAILABLE);
      assert.equal(
        meshd.logs.filter((l) => l['access'] === true && l['service'] === 'greeter').length,
        1,
        'only the server failure is logged at ratio 0; OK and NOT_FOUND are sampled',
      );
    } finally {
      greeter.close();
      dead.close();
      await meshd.stop();
      await server.close();
    }
  });

  it('sends a gRPC server the tighter deadline in grpc-timeout: the service timeout under a caller’s longer one', async () => {
    const seen: (string | undefined)[] = [];
    const server = createH2Server((req, res) => {
      seen.push(req.headers['grpc-timeout'] as string | undefined);
      res.writeHead(200, { 'content-type': 'application/grpc' });
      res.addTrailers({ 'grpc-status': '0' });
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  greeter: { protocol: h2c, timeout: 2s, endpoints: [ { address: 127.0.0.1:${(server.address() as AddressInfo).port} } ] }
`);
    const session = h2connect(`http://${meshd.outbound}`);
    const call = (timeout: string | undefined): Promise<void> =>
      new Promise((resolve, reject) => {
        const headers: Record<string, string> = {
          ':method': 'POST',
          ':path': SAY,
          ':authority': 'greeter',
          'content-type': 'application/grpc',
          te: 'trailers',
        };
        if (timeout !== undefined) headers['grpc-timeout'] = timeout;
        const stream = session.request(headers);
        stream.on('error', reject);
        stream.on('close', () => resolve());
        stream.resume();
        stream.end();
      });
    try {
      await call('10S');
      await call('500m');
      await call(undefined);
      const ms = seen.map((v) => Number(/^(\d+)m$/.exec(v ?? '')?.[1]));
      assert.ok(ms[0]! > 1_000 && ms[0]! <= 2_000, `the service's 2 s, not the caller's 10 s: ${String(seen[0])}`);
      assert.ok(ms[1]! > 0 && ms[1]! <= 500, `the caller's 500 ms: ${String(seen[1])}`);
      assert.ok(ms[2]! > 1_000 && ms[2]! <= 2_000, `the service's 2 s when the caller set none: ${String(seen[2])}`);
    } finally {
      session.close();
      await meshd.stop();
      await new Promise((r) => server.close(r));
    }
  });

  it('answers gRPC callers with gRPC statuses for meshd errors', async () => {
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  empty: {}
`);
    const empty = grpcClient(meshd.outbound, 'empty');
    const unknown = grpcClient(meshd.outbound, 'nosuch');
    try {
      await assert.rejects(empty.say('x'), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE);
      await assert.rejects(unknown.say('x'), (err: grpc.ServiceError) => err.code === grpc.status.UNIMPLEMENTED);
    } finally {
      empty.close();
      unknown.close();
      await meshd.stop();
    }
  });
});

describe('streaming request bodies', () => {
  it('carries gRPC client-streaming and bidirectional calls (@grpc/grpc-js) to h2c and across an mTLS hop', async () => {
    const server = await startGrpcServer((req) => Promise.resolve({ text: req.text }));
    const dir = mkdtempSync(join(tmpdir(), 'meshd-grpc-stream-'));
    const ca = await newCa();
    const a = await writeHost(dir, 'a', ca, ca.certPem);
    const b = await writeHost(dir, 'b', ca, ca.certPem);
    const B = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0 }
${tlsBlock(b.dir)}
local:
  remote: { target: ${server.address}, protocol: h2c, allow: [ "${a.identity}" ] }
`);
    const inbound = (await B.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'inbound'))['address'] as string;
    const A = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
${tlsBlock(a.dir)}
services:
  echo: { endpoints: [ { address: ${server.address} } ], protocol: h2c, timeout: 15s }
  remote: { endpoints: [ { address: ${inbound}, identity: ${b.identity} } ], timeout: 15s }
`);
    try {
      for (const service of ['echo', 'remote']) {
        const client = grpcClient(A.outbound, service);
        try {
          assert.deepEqual(await client.collect(['a', 'b', 'c']), { text: 'a,b,c' }, `${service}: client-streaming`);
          const chat = client.chat();
          // Each echo must arrive while the call is still open: nothing may wait for the end of the body.
          assert.equal(await chat.send('one'), 'echo:one', `${service}: bidi, first message`);
          assert.equal(await chat.send('two'), 'echo:two', `${service}: bidi, second message`);
          await chat.end();
        } finally {
          client.close();
        }
      }
    } finally {
      await A.stop();
      await B.stop();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('forwards a chunked upload at once to a backend that answers before the body ends, and a deadline ends a trickled body', async () => {
    // Answers as soon as the first chunk arrives, then echoes the rest as it comes.
    const backend = await startBackend((req, res) => {
      req.once('data', (first: Buffer) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write(`got:${first.toString()}\n`);
        req.on('data', (d: Buffer) => res.write(`got:${d.toString()}\n`));
        req.on('end', () => res.end('done\n'));
      });
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  upload: { endpoints: [ { address: ${backend.address} } ], timeout: 10s }
  short: { endpoints: [ { address: ${backend.address} } ], timeout: 600ms }
`);
    try {
      const [host, port] = splitAddress(meshd.outbound);
      const conversation = await new Promise<string>((resolve, reject) => {
        const req = httpRequest({ host, port, method: 'POST', path: '/up', headers: { host: 'upload', 'transfer-encoding': 'chunked' } }, (res) => {
          let seen = '';
          res.on('data', (d: Buffer) => {
            seen += d.toString();
            // The caller sends its next chunk only after meshd delivered the answer to the previous one.
            if (seen === 'got:1\n') req.write('2');
            else if (seen === 'got:1\ngot:2\n') req.end();
          });
          res.on('end', () => resolve(seen));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.write('1');
      });
      assert.equal(conversation, 'got:1\ngot:2\ndone\n');

      // A body that never finishes: the service deadline ends the exchange, as for any other.
      const started = Date.now();
      const status = await new Promise<number | string>((resolve) => {
        const req = httpRequest({ host, port, method: 'PUT', path: '/slow', headers: { host: 'short', 'transfer-encoding': 'chunked' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
        req.write('x');
      });
      const elapsed = Date.now() - started;
      assert.ok(status === 200 || status === 'ECONNRESET', `answered or cut at the deadline, got ${status}`);
      assert.ok(elapsed < 5_000, `ended by the 600 ms deadline, after ${elapsed} ms`);
    } finally {
      await meshd.stop();
      await backend.close();
    }
  });
});
