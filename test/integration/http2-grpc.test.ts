/**
 * HTTP/2: h2c from local apps on the outbound port (prior knowledge), HTTP/2
 * multiplexed to the endpoints, and gRPC end to end with a real client and server.
 */
import assert from 'node:assert/strict';
import { connect as h2connect } from 'node:http2';
import { describe, it } from 'node:test';
import { startBackend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { request } from '../helpers/http.ts';
import { grpc, grpcClient, startGrpcServer } from '../helpers/grpc.ts';

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
      if (req.text === 'flaky' && n % 3 === 0) throw { code: grpc.status.UNAVAILABLE, details: 'try again' };
      if (req.text === 'missing') throw { code: grpc.status.NOT_FOUND, details: 'no such thing' };
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
      const state = (await request(meshd.admin, { path: '/debug/state' })).json<{ services: { endpoints: { stats: { total: Record<string, number> } }[] }[] }>();
      assert.ok((state.services[0]?.endpoints[0]?.stats.total['grpc_error'] ?? 0) >= 4, 'UNAVAILABLE counted against the endpoint');
    } finally {
      client.close();
      await meshd.stop();
      await server.close();
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
