/**
 * Distributed tracing across two hosts over mTLS, exported with
 * OpenTelemetry's SDK over OTLP/HTTP to a receiver in the test that decodes
 * the real OTLP/JSON payloads (POST /v1/traces, ExportTraceServiceRequest):
 * a span per hop (outbound CLIENT, inbound SERVER) in one trace, parented on
 * the caller's W3C traceparent, with service, endpoint, status and the
 * retries and feedback decisions that affected it; errors exported even when
 * not sampled; a dead collector costs callers nothing. Access log lines
 * carry the trace id.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closedPort, startBackend, startRawBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { metricValue, request, sleep } from '../helpers/http.ts';
import { newCa, tlsBlock, writeHost } from '../helpers/pki.ts';
import { openWebSocket, serveWebSocketEcho } from '../helpers/websocket.ts';
import { tcpRoundTrip } from '../helpers/tcp.ts';
import type { Server as HttpServer } from 'node:http';

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  traceState?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: OtlpValue }[];
  events?: { name: string; attributes?: { key: string; value: OtlpValue }[] }[];
  status?: { code?: number };
}
interface Received {
  service: string;
  span: OtlpSpan;
}

/** An OTLP/HTTP receiver: decodes every ExportTraceServiceRequest (JSON) it gets. */
async function startReceiver(): Promise<{ url: string; spans: Received[]; server: Server; posts: string[] }> {
  const spans: Received[] = [];
  const posts: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resourceSpans: { resource: { attributes: { key: string; value: OtlpValue }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
      };
      for (const rs of body.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        for (const ss of rs.scopeSpans) for (const span of ss.spans) spans.push({ service, span });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, spans, server, posts };
}

const attr = (s: OtlpSpan, key: string): string | number | undefined => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v?.stringValue ?? (v?.intValue === undefined ? undefined : Number(v.intValue));
};

const inboundOf = async (d: RunningDaemon): Promise<string> =>
  (await d.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'inbound'))['address'] as string;

describe('distributed tracing', () => {
  let dir: string;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let app: Backend;
  let tcpApp: Backend;
  let A: RunningDaemon;
  let B: RunningDaemon;
  const seenByApp: Record<string, string | undefined>[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-tracing-'));
    receiver = await startReceiver();
    app = await startBackend((req, res) => {
      seenByApp.push({ path: req.url, traceparent: req.headers.traceparent as string | undefined, tracestate: req.headers.tracestate as string | undefined });
      res.statusCode = req.url === '/fail' ? 500 : 200;
      res.end('ok');
    });
    serveWebSocketEcho(app.server as HttpServer, (req) => seenByApp.push({ traceparent: req.headers.traceparent as string | undefined, websocket: 'yes' }));
    tcpApp = await startRawBackend((socket) => socket.pipe(socket));
    const ca = await newCa();
    const hostA = await writeHost(dir, 'a', ca, ca.certPem);
    const hostB = await writeHost(dir, 'b', ca, ca.certPem);
    const env = { OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test' };
    B = await startDaemon(
      `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0 }
${tlsBlock(hostB.dir)}
tracing: { enabled: true, sampleRatio: 1, endpoint: ${receiver.url} }
local:
  web: { target: ${app.address} }
  chat: { target: ${app.address} }
  store: { target: ${tcpApp.address}, tcp: true }
`,
      { env: { ...env, OTEL_SERVICE_NAME: 'meshd-b' } },
    );
    const inbound = await inboundOf(B);
    const dead = await closedPort();
    A = await startDaemon(
      `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
${tlsBlock(hostA.dir)}
tracing: { enabled: true, sampleRatio: 1, endpoint: ${receiver.url} }
log: { access: { enabled: true, sampleRatio: 1 } }
services:
  web:
    endpoints: [ { address: ${inbound}, identity: ${hostB.identity} }, { address: 127.0.0.1:${dead} } ]
    balancer: { algorithm: round-robin }
    retries: { attempts: 3 }
    outlier: { enabled: false }
  chat: { endpoints: [ { address: ${inbound}, identity: ${hostB.identity} } ] }
  store: { endpoints: [ { address: ${inbound}, identity: ${hostB.identity} } ], tcp: { listen: 127.0.0.1:0 } }
`,
      { env: { ...env, OTEL_SERVICE_NAME: 'meshd-a' } },
    );
  });

  after(async () => {
    await Promise.all([A.stop(), B.stop()]);
    await Promise.all([app.close(), tcpApp.close()]);
    await new Promise((r) => receiver.server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('records one trace across both hops, parented on the caller’s traceparent, with retries as events', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    // Round-robin over a live and a dead endpoint: some calls are retried off the dead one.
    for (let i = 0; i < 4; i++) {
      const reply = await request(A.outbound, {
        path: `/hello/${i}`,
        headers: { host: 'web', traceparent: `00-${traceId}-00f067aa0ba902b7-01`, tracestate: 'congo=t61rcWkgMzE' },
      });
      assert.equal(reply.status, 200);
    }
    for (let i = 0; i < 50 && receiver.spans.filter((s) => s.span.traceId === traceId).length < 8; i++) await sleep(100);
    const spans = receiver.spans.filter((s) => s.span.traceId === traceId);
    assert.equal(spans.length, 8, JSON.stringify(spans.map((s) => s.span.name)));
    const outbound = spans.filter((s) => s.span.name === 'outbound web');
    const inbound = spans.filter((s) => s.span.name === 'inbound local:web');
    assert.equal(outbound.length, 4);
    assert.equal(inbound.length, 4);
    assert.ok(
      receiver.posts.every((p) => p === 'POST /v1/traces application/json'),
      JSON.stringify(receiver.posts),
    );
    for (const o of outbound) {
      assert.equal(o.service, 'meshd-a');
      assert.equal(o.span.kind, 3, 'CLIENT');
      assert.equal(o.span.parentSpanId, '00f067aa0ba902b7');
      assert.equal(o.span.traceState, 'congo=t61rcWkgMzE');
      assert.equal(attr(o.span, 'meshd.service'), 'web');
      assert.equal(attr(o.span, 'http.response.status_code'), 200);
      // The inbound hop is the child of the outbound one.
      const child = inbound.find((s) => s.span.parentSpanId === o.span.spanId);
      assert.ok(child !== undefined, 'an inbound span parented on this outbound span');
      assert.equal(child.service, 'meshd-b');
      assert.equal(child.span.kind, 2, 'SERVER');
      assert.match(String(attr(child.span, 'meshd.caller')), /^spiffe:\/\/test\.example\/host\/a$/);
    }
    // Every request got its own traceparent to the app, with B's inbound span as the parent; tracestate travels on.
    const fromApp = seenByApp.slice(-4);
    for (const seen of fromApp) {
      const parent = seen.traceparent?.split('-')[2];
      assert.ok(
        inbound.some((s) => s.span.spanId === parent),
        `app saw ${seen.traceparent}`,
      );
      assert.equal(seen.tracestate, 'congo=t61rcWkgMzE');
    }
    const retried = outbound.filter((o) => Number(attr(o.span, 'meshd.retries')) > 0);
    assert.ok(retried.length >= 1, 'some calls were retried off the dead endpoint');
    assert.ok(retried.every((o) => o.span.events?.some((e) => e.name === 'meshd.retry')));
    // The access log line names the same trace.
    await A.waitForLog((l) => l['access'] === true && l['traceId'] === traceId && l['service'] === 'web');
    // Resource attributes from OTEL_RESOURCE_ATTRIBUTES.
    const metrics = (await request(A.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_tracing_spans_total', { result: 'exported' }) >= 4);
  });

  it('starts a trace when the caller sent none, and exports an error even when the trace is not sampled', async () => {
    await request(A.outbound, { path: '/fresh', headers: { host: 'web' } });
    const unsampledTrace = '0af7651916cd43dd8448eb211c80319c';
    const failed = await request(A.outbound, { path: '/fail', headers: { host: 'web', traceparent: `00-${unsampledTrace}-b7ad6b7169203331-00` } });
    assert.equal(failed.status, 500);
    const ok = '1af7651916cd43dd8448eb211c80319c';
    await request(A.outbound, { path: '/fine', headers: { host: 'web', traceparent: `00-${ok}-b7ad6b7169203331-00` } });
    await sleep(600);
    const fresh = receiver.spans.find((s) => attr(s.span, 'url.path') === '/fresh' && s.span.name === 'outbound web');
    assert.ok(fresh !== undefined && fresh.span.parentSpanId === undefined, 'a root span for a caller without traceparent');
    const errors = receiver.spans.filter((s) => s.span.traceId === unsampledTrace);
    assert.ok(
      errors.some((s) => s.span.status?.code === 2),
      'the failing, unsampled call was exported as an error',
    );
    // Made late, the error spans keep the ids their hops sent on: B's inbound span is the child of A's outbound one.
    const failedOut = errors.find((s) => s.span.name === 'outbound web');
    const failedIn = errors.find((s) => s.span.name === 'inbound local:web');
    assert.ok(failedOut !== undefined && failedIn !== undefined, JSON.stringify(errors.map((s) => s.span.name)));
    assert.equal(failedOut.span.parentSpanId, 'b7ad6b7169203331');
    assert.equal(failedIn.span.parentSpanId, failedOut.span.spanId);
    assert.deepEqual(
      receiver.spans.filter((s) => s.span.traceId === ok),
      [],
      'an unsampled success is not exported',
    );
    // The app saw the unsampled flag kept.
    assert.ok(seenByApp.some((s) => s.traceparent?.startsWith(`00-${unsampledTrace}-`) === true && s.traceparent.endsWith('-00')));
  });

  it('drops a tracestate that comes without a valid traceparent, and passes on at most 32 members (W3C Trace Context)', async () => {
    await request(A.outbound, { path: '/orphan-state', headers: { host: 'web', tracestate: 'vendorx=opaque' } });
    await request(A.outbound, { path: '/bad-parent-state', headers: { host: 'web', traceparent: 'garbage', tracestate: 'vendorx=opaque' } });
    const members = Array.from({ length: 40 }, (_, i) => `v${String(i)}=x`).join(',');
    await request(A.outbound, {
      path: '/many-state',
      headers: { host: 'web', traceparent: '00-2af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: members },
    });
    const at = (path: string): Record<string, string | undefined> | undefined => seenByApp.find((s) => s['path'] === path);
    for (const path of ['/orphan-state', '/bad-parent-state']) {
      const seen = at(path);
      assert.ok(seen?.['traceparent'] !== undefined, `${path} reached the app, with a new trace`);
      assert.equal(seen['tracestate'], undefined, path);
    }
    const passed = at('/many-state')?.['tracestate']?.split(',') ?? [];
    assert.ok(passed.length > 0 && passed.length <= 32, `${String(passed.length)} members passed on`);
    assert.equal(passed[0], 'v0=x');
  });

  it('traces WebSocket tunnels and TCP connections on both hops, maps them, and logs them with their bytes', async () => {
    const traceId = '5bf92f3577b34da6a3ce929d0e0e4737';
    const ws = await openWebSocket(A.outbound, 'chat', '/room?user=1', { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    assert.equal(ws.status, 101);
    ws.send('hello');
    assert.equal(await ws.receive(), 'echo:hello');
    ws.close();
    const tcpListener = (await A.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'tcp'))['address'] as string;
    assert.equal(await tcpRoundTrip(tcpListener, 'twelve bytes'), 'twelve bytes');

    // WebSocket: one trace over both hops, each span from the upgrade to the close.
    const wsSpans = (): Received[] => receiver.spans.filter((s) => s.span.traceId === traceId);
    for (let i = 0; i < 50 && wsSpans().length < 2; i++) await sleep(100);
    const out = wsSpans().find((s) => s.span.name === 'outbound chat');
    const inb = wsSpans().find((s) => s.span.name === 'inbound local:chat');
    assert.ok(out !== undefined && inb !== undefined, JSON.stringify(wsSpans().map((s) => s.span.name)));
    assert.equal(out.span.parentSpanId, '00f067aa0ba902b7');
    assert.equal(inb.span.parentSpanId, out.span.spanId);
    for (const span of [out.span, inb.span]) {
      assert.equal(attr(span, 'network.protocol.name'), 'websocket');
      assert.equal(attr(span, 'http.response.status_code'), 101);
      assert.equal(attr(span, 'url.path'), '/room');
      assert.ok(Number(attr(span, 'meshd.bytes_received')) > 0 && Number(attr(span, 'meshd.bytes_sent')) > 0);
    }
    assert.match(String(attr(inb.span, 'meshd.caller')), /host\/a$/);
    // The target's handshake named B's inbound span as its parent.
    const handshake = seenByApp.filter((s) => s['websocket'] === 'yes').at(-1);
    assert.equal(handshake?.traceparent?.split('-')[2], inb.span.spanId);

    // TCP: a span per connection on each hop (no fields to carry the context between hosts outside mesh mode).
    const tcpSpans = (): Received[] => receiver.spans.filter((s) => s.span.name === 'outbound store' || s.span.name === 'inbound local:store');
    for (let i = 0; i < 50 && tcpSpans().length < 2; i++) await sleep(100);
    const tcpOut = tcpSpans().find((s) => s.span.name === 'outbound store');
    const tcpIn = tcpSpans().find((s) => s.span.name === 'inbound local:store');
    assert.ok(tcpOut !== undefined && tcpIn !== undefined, JSON.stringify(tcpSpans().map((s) => s.span.name)));
    assert.equal(attr(tcpOut.span, 'network.transport'), 'tcp');
    assert.equal(attr(tcpOut.span, 'http.response.status_code'), undefined);
    assert.equal(attr(tcpOut.span, 'meshd.bytes_received'), 12);
    assert.equal(attr(tcpOut.span, 'meshd.bytes_sent'), 12);
    assert.equal(
      `${String(attr(tcpIn.span, 'server.address'))}:${String(attr(tcpIn.span, 'server.port'))}`,
      tcpApp.address,
      'host and port apart, as OTel names them',
    );

    // The dependency maps: the tunnels are edges that say what they carried.
    const graphA = (await request(A.admin, { path: '/debug/graph' })).json() as { edges: { from: string; to: string; protocols: string[] }[] };
    assert.deepEqual(graphA.edges.find((e) => e.to === 'service:chat')?.protocols, ['websocket']);
    assert.deepEqual(graphA.edges.find((e) => e.to === 'service:store')?.protocols, ['tcp']);
    const graphB = (await request(B.admin, { path: '/debug/graph' })).json() as { edges: { from: string; to: string; protocols: string[] }[] };
    const inboundChat = graphB.edges.find((e) => e.to === 'service:local:chat');
    assert.match(inboundChat?.from ?? '', /^caller:spiffe:\/\/.*host\/a$/);
    assert.deepEqual(graphB.edges.find((e) => e.to === 'service:local:store')?.protocols, ['tcp']);

    // Access lines at the close, with the bytes each way and the trace.
    const wsLine = await A.waitForLog((l) => l['access'] === true && l['protocol'] === 'websocket' && l['service'] === 'chat');
    assert.equal(wsLine['status'], 101);
    assert.equal(wsLine['traceId'], traceId);
    assert.equal(wsLine['path'], '/room');
    const tcpLine = await A.waitForLog((l) => l['access'] === true && l['protocol'] === 'tcp' && l['service'] === 'store');
    assert.equal(tcpLine['bytesReceived'], 12);
    assert.equal(tcpLine['bytes'], 12);
    assert.equal(typeof tcpLine['durationMs'], 'number');
  });

  it('keeps serving, fast, when the collector is down', async () => {
    const dead = await closedPort();
    const C = await startDaemon(
      `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
tracing: { enabled: true, sampleRatio: 1, endpoint: http://127.0.0.1:${dead}/v1/traces }
services:
  plain: { endpoints: [ { address: ${app.address} } ] }
`,
      { env: { OTEL_BSP_SCHEDULE_DELAY: '50', OTEL_BSP_MAX_QUEUE_SIZE: '64', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '16', OTEL_BSP_EXPORT_TIMEOUT: '300' } },
    );
    try {
      const started = performance.now();
      for (let i = 0; i < 300; i++) assert.equal((await request(C.outbound, { headers: { host: 'plain' } })).status, 200);
      const perRequestMs = (performance.now() - started) / 300;
      await sleep(1_000);
      const metrics = (await request(C.admin, { path: '/metrics' })).body;
      const failedOrDropped =
        metricValue(metrics, 'meshd_tracing_spans_total', { result: 'failed' }) + metricValue(metrics, 'meshd_tracing_spans_total', { result: 'dropped' });
      // All but what is still queued (at most the queue, 64) or in the export in flight (16, which the exporter retries).
      assert.ok(failedOrDropped >= 300 - 64 - 16, `spans failed or dropped: ${failedOrDropped}`);
      assert.ok(metricValue(metrics, 'meshd_tracing_spans_total', { result: 'failed' }) >= 16, 'exports failed and were counted');
      await C.waitForLog((l) => l.msg === 'trace export failed; spans dropped');
      // Not a timing assertion on meshd: a sanity bound that a hanging exporter would blow by orders of magnitude.
      assert.ok(perRequestMs < 200, `${perRequestMs} ms per request`);
    } finally {
      await C.stop();
    }
  });
});
