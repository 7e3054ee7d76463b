/**
 * Traffic management against real v1/v2 backends and real clients (curl,
 * Node's http): Gateway API routes with header pinning, weighted splits and
 * header modifiers; access rules that cannot be slipped past with encoded
 * paths; rate limits with Retry-After; mirroring to a subset that is down;
 * fault injection through the admin API that the feedback loop reacts to
 * and that expires by itself; canaries rolled back and promoted by this
 * host's own observations.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Agent } from 'node:http';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { closedPort, echo, startBackend, type Backend } from '../helpers/backend.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { metricValue, request, sleep, splitAddress } from '../helpers/http.ts';
import { openWebSocket, serveWebSocketEcho } from '../helpers/websocket.ts';
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const run = promisify(execFile);

/** `count` GETs through meshd, `parallel` at a time; returns each reply's status and answering port. */
async function drive(meshd: RunningDaemon, count: number, opts: { host: string; path?: string; headers?: Record<string, string>; parallel?: number }) {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.parallel ?? 8 });
  const out: { status: number; port: string | undefined; fault: string | undefined }[] = [];
  try {
    for (let done = 0; done < count;) {
      const batch = Math.min(opts.parallel ?? 8, count - done);
      const replies = await Promise.all(
        Array.from({ length: batch }, () => request(meshd.outbound, { path: opts.path ?? '/', headers: { host: opts.host, ...opts.headers }, agent })),
      );
      for (const r of replies)
        out.push({ status: r.status, port: r.headers['x-backend-port'] as string | undefined, fault: r.headers['x-meshd-fault'] as string | undefined });
      done += batch;
    }
  } finally {
    agent.destroy();
  }
  return out;
}

async function state(
  meshd: RunningDaemon,
): Promise<{ services: { name: string; endpoints: { address: string; state: string }[]; canary?: { phase: string; weight: number } }[] }> {
  return (await request(meshd.admin, { path: '/debug/state' })).json() as never;
}

async function admin(meshd: RunningDaemon, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  return request(meshd.admin, {
    method,
    path,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

describe('routes, splits and header modifiers', () => {
  it('pins x-canary: 1 to v2, splits /api 80/20, modifies headers both ways (curl and Node)', async (t) => {
    const v1 = await startBackend(echo);
    const v2 = await startBackend(echo);
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    # Routing only: on a loaded machine the default latency ejection could take the only v2 endpoint out of the split.
    outlier: { enabled: false }
    endpoints:
      - { address: ${v1.address}, labels: { version: v1 } }
      - { address: ${v2.address}, labels: { version: v2 } }
    routes:
      - name: pinned
        matches: [ { headers: [ { name: X-Canary, value: "1" } ] } ]
        backendRefs: [ { subset: { version: v2 } } ]
        filters:
          - type: RequestHeaderModifier
            requestHeaderModifier: { set: [ { name: x-route, value: pinned } ], remove: [ x-secret ] }
          - type: ResponseHeaderModifier
            responseHeaderModifier: { add: [ { name: x-served-by, value: meshd } ] }
      - name: api
        matches: [ { path: { type: PathPrefix, value: /api } } ]
        backendRefs: [ { subset: { version: v1 }, weight: 80 }, { subset: { version: v2 }, weight: 20 } ]
      - name: stable
        backendRefs: [ { subset: { version: v1 } } ]
`);
    try {
      // curl, a client no one here wrote: the pinned route, both header modifiers.
      const { stdout } = await run('curl', [
        '-s',
        '-D',
        '-',
        '-H',
        'Host: users',
        '-H',
        'X-Canary: 1',
        '-H',
        'X-Secret: s3',
        `http://${meshd.outbound}/anything`,
      ]);
      assert.match(stdout, new RegExp(`x-backend-port: ${v2.port}`, 'i'));
      assert.match(stdout, /x-served-by: meshd/i);
      const echoed = JSON.parse(stdout.slice(stdout.indexOf('\r\n\r\n') + 4)) as { headers: Record<string, string> };
      assert.equal(echoed.headers['x-route'], 'pinned');
      assert.equal(echoed.headers['x-secret'], undefined);

      const pinned = await drive(meshd, 50, { host: 'users', headers: { 'x-canary': '1' } });
      assert.ok(
        pinned.every((r) => r.port === String(v2.port)),
        'pinned requests all on v2',
      );
      const rest = await drive(meshd, 50, { host: 'users', path: '/other' });
      assert.ok(
        rest.every((r) => r.port === String(v1.port)),
        'unmatched requests on the stable route',
      );
      // "/apiary" is not under the "/api" prefix (whole segments): stable route.
      const apiary = await drive(meshd, 20, { host: 'users', path: '/apiary' });
      assert.ok(apiary.every((r) => r.port === String(v1.port)));

      const split = await drive(meshd, 1_000, { host: 'users', path: '/api/items', parallel: 16 });
      const toV2 = split.filter((r) => r.port === String(v2.port)).length / split.length;
      t.diagnostic(`/api split: ${(toV2 * 100).toFixed(1)} % to v2 of ${split.length}`);
      assert.ok(
        split.every((r) => r.status === 200),
        JSON.stringify(split.filter((r) => r.status !== 200).slice(0, 5)),
      );
      // 20 % ± 5 points (binomial sd at n = 1000 is 1.3 points).
      assert.ok(toV2 > 0.15 && toV2 < 0.25, `share to v2 ${toV2}`);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.equal(metricValue(metrics, 'meshd_route_requests_total', { service: 'users', route: 'api', code_class: '2xx' }), 1_000);
    } finally {
      await meshd.stop();
      await Promise.all([v1.close(), v2.close()]);
    }
  });
});

describe('redirects and rewrites (RequestRedirect, URLRewrite)', () => {
  it('answers redirects itself and rewrites the path and Host upstream, on HTTP/1.1, h2c and WebSocket handshakes', async () => {
    const backend = await startBackend(echo);
    const handshakes: { url: string | undefined; host: string | undefined }[] = [];
    serveWebSocketEcho(backend.server as import('node:http').Server, (req) => handshakes.push({ url: req.url, host: req.headers.host }));
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
log: { access: { enabled: true } }
services:
  users:
    endpoints: [ { address: ${backend.address} } ]
    routes:
      - name: moved
        matches: [ { path: { type: PathPrefix, value: /old } } ]
        filters:
          - { type: RequestRedirect, requestRedirect: { scheme: https, hostname: users.example, statusCode: 301, path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } } }
          - { type: ResponseHeaderModifier, responseHeaderModifier: { set: [ { name: x-moved, value: "1" } ] } }
      - name: v1
        matches: [ { path: { type: PathPrefix, value: /v1 } } ]
        filters: [ { type: URLRewrite, urlRewrite: { hostname: users.internal, path: { type: ReplacePrefixMatch, replacePrefixMatch: /api/v2 } } } ]
`);
    try {
      const before = backend.hits;
      // curl, HTTP/1.1 and h2c: 301 with the Location Gateway API describes, the route's response modifier, no body, nothing forwarded.
      for (const http of ['--http1.1', '--http2-prior-knowledge']) {
        const { stdout } = await run('curl', ['-s', http, '-D', '-', '-o', '/dev/null', '-H', 'Host: users:4140', `http://${meshd.outbound}/old/a/b?x=1`]);
        assert.match(stdout, /^HTTP\/[12](\.1)? 301/, stdout);
        assert.match(stdout, /^location: https:\/\/users\.example\/new\/a\/b\?x=1\r$/im, stdout);
        assert.match(stdout, /^x-moved: 1\r$/im, stdout);
        assert.match(stdout, /^content-length: 0\r$/im, stdout);
      }
      assert.equal(backend.hits, before, 'a redirect forwards nothing');
      // URLRewrite: the endpoint sees the new path (query kept) and Host; the caller's spelling of a dot path is judged first.
      for (const [http, path] of [
        ['--http1.1', '/v1/items?page=2'],
        ['--http2-prior-knowledge', '/v1/items?page=2'],
        ['--http1.1', '/x/../v1/items?page=2'],
      ] as const) {
        const { stdout } = await run('curl', ['-s', http, '--path-as-is', '-H', 'Host: users', `http://${meshd.outbound}${path}`]);
        const seen = JSON.parse(stdout) as { url: string; headers: Record<string, string> };
        assert.deepEqual([seen.url, seen.headers['host']], ['/api/v2/items?page=2', 'users.internal'], `${http} ${path}: ${stdout}`);
      }
      // The access log shows the request as the caller sent it.
      await meshd.waitForLog((l) => l['access'] === true && l['route'] === 'v1' && l['path'] === '/v1/items');
      // WebSocket handshakes: redirected the same way, and rewritten on their way to the endpoint.
      const redirected = await openWebSocket(meshd.outbound, 'users', '/old/socket');
      assert.equal(redirected.status, 301);
      assert.match(redirected.responseHead, /^location: https:\/\/users\.example\/new\/socket\r$/im);
      redirected.close();
      const ws = await openWebSocket(meshd.outbound, 'users', '/v1/socket?room=1');
      assert.equal(ws.status, 101);
      ws.send('hi');
      assert.equal(await ws.receive(), 'echo:hi');
      ws.close();
      assert.deepEqual(handshakes, [{ url: '/api/v2/socket?room=1', host: 'users.internal' }]);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      // Two HTTP redirects (HTTP/1.1, h2c) and the WebSocket one, each counted on its route.
      assert.equal(metricValue(metrics, 'meshd_route_requests_total', { service: 'users', route: 'moved', code_class: '3xx' }), 3);
    } finally {
      await meshd.stop();
      await backend.close();
    }
  });
});

describe('access rules and rate limits', () => {
  it('denies DELETE and /admin however the path is spelled, and answers 429 with Retry-After over the limit', async () => {
    const backend = await startBackend(echo);
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    endpoints: [ { address: ${backend.address} } ]
    access:
      - { action: deny, methods: [ DELETE ] }
      - { action: deny, paths: [ /admin, /admin/* ] }
    routes:
      - name: search
        matches: [ { path: { type: PathPrefix, value: /search } } ]
        rateLimit: { requestsPerSecond: 2, burst: 3 }
`);
    try {
      assert.equal((await request(meshd.outbound, { headers: { host: 'users' }, path: '/ok' })).status, 200);
      const del = await request(meshd.outbound, { method: 'DELETE', headers: { host: 'users' }, path: '/ok' });
      assert.equal(del.status, 403);
      assert.equal(del.headers['x-meshd-error'], 'forbidden');
      for (const path of ['/admin', '/admin/users', '//admin/users', '/public/../admin/x', '/%61dmin/x', '/admin%2Fx', '/public/%2e%2e/admin']) {
        const { stdout } = await run('curl', [
          '-s',
          '--path-as-is',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '-H',
          'Host: users',
          `http://${meshd.outbound}${path}`,
        ]);
        assert.equal(stdout, '403', `${path} answered ${stdout}`);
      }
      assert.equal(backend.hits, 1, 'no denied request reached the backend');

      const statuses: number[] = [];
      let retryAfter: string | undefined;
      for (let i = 0; i < 6; i++) {
        const r = await request(meshd.outbound, { headers: { host: 'users' }, path: '/search?q=x' });
        statuses.push(r.status);
        if (r.status === 429) retryAfter = r.headers['retry-after'] as string;
      }
      assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
      assert.ok(statuses.slice(3).includes(429), JSON.stringify(statuses));
      assert.equal(retryAfter, '1');
      // Another route is not limited by the search route's bucket.
      assert.equal((await request(meshd.outbound, { headers: { host: 'users' }, path: '/ok' })).status, 200);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      const limited = metricValue(metrics, 'meshd_rate_limited_total', { service: 'users', route: 'search' });
      assert.ok(limited >= 1);
      // The route counts the status the caller got: its 429s are 4xx, not the 2xx of a request that never went upstream.
      const routeCount = (code: string) => metricValue(metrics, 'meshd_route_requests_total', { service: 'users', route: 'search', code_class: code });
      assert.deepEqual([routeCount('2xx'), routeCount('4xx')], [statuses.filter((s) => s === 200).length, limited]);
    } finally {
      await meshd.stop();
      await backend.close();
    }
  });

  it('keeps a spent bucket spent across a reload that leaves the limit alone; a changed limit starts full', async () => {
    const backend = await startBackend(echo);
    // One token every 10 s: nothing refills during the test.
    const config = (burst: number, extra = ''): string => `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    endpoints: [ { address: ${backend.address} } ]
    rateLimit: { requestsPerSecond: 0.1, burst: ${burst} }
    routes:
      - name: search
        matches: [ { path: { type: PathPrefix, value: /search } } ]
        rateLimit: { requestsPerSecond: 0.1, burst: 1 }
${extra}
`;
    const meshd = await startDaemon(config(3));
    const status = async (path: string): Promise<number> => (await request(meshd.outbound, { headers: { host: 'users' }, path })).status;
    const reload = async (yaml: string): Promise<void> => {
      const mark = meshd.logs.length;
      meshd.writeConfig(yaml);
      meshd.signal('SIGHUP');
      await meshd.waitForLog((l) => l.msg === 'config reloaded', 10_000, mark);
    };
    try {
      assert.deepEqual([await status('/search'), await status('/search')], [200, 429]);
      assert.deepEqual([await status('/a'), await status('/b'), await status('/c')], [200, 429, 429]);
      // Another service added: users' limits are unchanged, their buckets stay spent.
      await reload(config(3, `  orders:\n    endpoints: [ { address: ${backend.address} } ]`));
      assert.equal(await status('/search'), 429, 'the route bucket was not refilled by the reload');
      assert.equal(await status('/a'), 429, 'the service bucket was not refilled by the reload');
      // The service limit changed: its bucket starts full; the route's is still spent.
      await reload(config(5));
      assert.equal(await status('/a'), 200);
      assert.equal(await status('/search'), 429);
    } finally {
      await meshd.stop();
      await backend.close();
    }
  });
});

describe('mirroring', () => {
  it('mirrors to a live subset with -shadow, and a mirror subset that is down costs callers nothing', async () => {
    const v1 = await startBackend(echo);
    const seen: string[] = [];
    const shadow = await startBackend((req, res) => {
      seen.push(`${req.headers.host} ${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => res.end('shadow'));
    });
    const dead = await closedPort();
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    endpoints:
      - { address: ${v1.address}, labels: { version: v1 } }
      - { address: ${shadow.address}, labels: { version: shadow } }
      - { address: 127.0.0.1:${dead}, labels: { version: dead } }
    outlier: { enabled: false }
    routes:
      - name: live
        matches: [ { path: { type: PathPrefix, value: /live } } ]
        backendRefs: [ { subset: { version: v1 } } ]
        filters: [ { type: RequestMirror, requestMirror: { backendRef: { subset: { version: shadow } } } } ]
      - name: down
        backendRefs: [ { subset: { version: v1 } } ]
        filters: [ { type: RequestMirror, requestMirror: { backendRef: { subset: { version: dead } }, percent: 100 } } ]
`);
    try {
      const post = await request(meshd.outbound, {
        method: 'POST',
        path: '/live/upload',
        headers: { host: 'users', 'content-type': 'text/plain' },
        body: 'x'.repeat(5_000),
      });
      assert.equal(post.status, 200);
      assert.equal((post.json() as { bodyBytes: number }).bodyBytes, 5_000);
      for (let i = 0; i < 50 && seen.length === 0; i++) await sleep(20);
      assert.deepEqual(seen, ['users-shadow POST /live/upload']);

      const replies = await drive(meshd, 200, { host: 'users', path: '/other' });
      assert.ok(
        replies.every((r) => r.status === 200 && r.port === String(v1.port)),
        'callers are unaffected by the dead mirror',
      );
      await sleep(200);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_mirror_requests_total', { service: 'users', result: 'failed' }) >= 100);
      assert.ok(metricValue(metrics, 'meshd_mirror_requests_total', { service: 'users', result: 'completed' }) >= 1);
    } finally {
      await meshd.stop();
      await Promise.all([v1.close(), shadow.close()]);
    }
  });
});

describe('fault injection', () => {
  it('an injected delay on one endpoint gets it ejected for latency, is labelled, and expires by itself', async (t) => {
    const backends: Backend[] = await Promise.all([startBackend(echo), startBackend(echo), startBackend(echo)]);
    const slow = backends[0] as Backend;
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    endpoints: [ ${backends.map((b) => `{ address: ${b.address} }`).join(', ')} ]
    balancer: { algorithm: round-robin }
    retries: { attempts: 1 }
    outlier: { latency: { factor: 3, floor: 20ms, minRequests: 5, minHosts: 2 }, window: 2s, baseEjection: 30s }
`);
    try {
      // Refused: malformed input, a browser's request, a non-JSON body, an unknown service.
      const bad = await admin(meshd, 'POST', '/faults', { service: 'users', name: 'x', duration: '1s', delay: { duration: 'soon' } });
      assert.equal(bad.status, 400);
      assert.ok(JSON.stringify(bad.json()).includes('delay/duration'), bad.body);
      assert.equal((await admin(meshd, 'POST', '/faults', { service: 'users', name: 'x', duration: '1s' })).status, 400, 'a fault must do something');
      assert.equal((await admin(meshd, 'POST', '/faults', '{not json')).status, 400);
      assert.equal(
        (await admin(meshd, 'POST', '/faults', { service: 'users', name: 'x', duration: '1s', abort: { status: 503 } }, { origin: 'http://evil.example' }))
          .status,
        403,
      );
      assert.equal((await request(meshd.admin, { method: 'POST', path: '/faults', headers: { 'content-type': 'text/plain' }, body: '{}' })).status, 415);
      assert.equal((await admin(meshd, 'POST', '/faults', { service: 'nope', name: 'x', duration: '1s', abort: { status: 503 } })).status, 404);

      const added = await admin(meshd, 'POST', '/faults', {
        service: 'users',
        name: 'slow-one',
        match: { endpoint: slow.address },
        delay: { duration: '150ms' },
        duration: '4s',
      });
      assert.equal(added.status, 201, added.body);
      const replies = await drive(meshd, 60, { host: 'users', parallel: 6 });
      assert.ok(replies.every((r) => r.status === 200));
      assert.ok(
        replies.some((r) => r.fault === 'slow-one'),
        'delayed responses name the fault',
      );
      const ejection = await meshd.waitForLog((l) => l['event'] === 'eject' && l['endpoint'] === slow.address, 10_000);
      t.diagnostic(`ejected: ${String(ejection['reason'])}`);
      assert.equal(ejection['reason'], 'latency');
      // The decision is in the state's timeline, and the traffic in the dependency map (JSON and DOT, parsed by Graphviz).
      const decisions = (
        (await request(meshd.admin, { path: '/debug/state' })).json() as { recentDecisions: { decision: string; endpoint?: string; reason: string }[] }
      ).recentDecisions;
      assert.ok(
        decisions.some((d) => d.decision === 'eject' && d.endpoint === slow.address && d.reason === 'latency'),
        JSON.stringify(decisions),
      );
      const graph = (await request(meshd.admin, { path: '/debug/graph' })).json() as { edges: { from: string; to: string; requests: number }[] };
      assert.ok(
        graph.edges.some((e) => e.from === 'caller:127.0.0.1' && e.to === 'service:users' && e.requests >= 60),
        JSON.stringify(graph.edges),
      );
      assert.ok(graph.edges.some((e) => e.from === 'service:users' && e.to === `endpoint:users/${slow.address}`));
      const dot = await request(meshd.admin, { path: '/debug/graph?format=dot' });
      assert.match(String(dot.headers['content-type']), /text\/vnd\.graphviz/);
      const parsed = await new Promise<string>((resolve, reject) => {
        const child = execFile('dot', ['-Tplain'], (err, out) => {
          if (err === null) resolve(out);
          else reject(new Error(`dot refused the map: ${err.message}`));
        });
        child.stdin?.end(dot.body);
      });
      assert.equal(parsed.split('\n').filter((l) => l.startsWith('edge ')).length, 4);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_faults_injected_total', { service: 'users', fault: 'slow-one', action: 'delay' }) >= 5);
      const listed = (await admin(meshd, 'GET', '/faults')).json() as { faults: { name: string }[] };
      assert.deepEqual(
        listed.faults.map((f) => f.name),
        ['slow-one'],
      );
      // Expires by itself.
      await sleep(4_200);
      assert.deepEqual(((await admin(meshd, 'GET', '/faults')).json() as { faults: unknown[] }).faults, []);
      const after = await drive(meshd, 20, { host: 'users' });
      assert.ok(after.every((r) => r.fault === undefined));
    } finally {
      await meshd.stop();
      await Promise.all(backends.map((b) => b.close()));
    }
  });

  it('aborts a share of one caller-selected request set with 503, retried away from the endpoint', async () => {
    const a = await startBackend(echo);
    const b = await startBackend(echo);
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    endpoints: [ { address: ${a.address} }, { address: ${b.address} } ]
    outlier: { enabled: false }
    faults:
      - { name: chaos-a, match: { endpoint: ${a.address}, headers: [ { name: x-chaos, value: "on" } ] }, abort: { status: 503 }, duration: 1h }
`);
    try {
      // Without the header: no fault.
      const plain = await drive(meshd, 40, { host: 'users' });
      assert.ok(plain.every((r) => r.status === 200 && r.fault === undefined));
      // With it: endpoint a answers 503 every time, the retry goes to b: callers still see 200.
      const chaos = await drive(meshd, 40, { host: 'users', headers: { 'x-chaos': 'on' } });
      assert.ok(
        chaos.every((r) => r.status === 200 && r.port === String(b.port)),
        JSON.stringify(chaos.slice(0, 5)),
      );
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_faults_injected_total', { service: 'users', fault: 'chaos-a', action: 'abort' }) >= 1);
      assert.ok(metricValue(metrics, 'meshd_retries_total', { service: 'users', reason: '503' }) >= 1);
    } finally {
      await meshd.stop();
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('the same policy on WebSocket and TCP paths', () => {
  it('applies routes, header modifiers, access rules and faults to WebSocket handshakes, and faults to TCP connections', async () => {
    const v1 = await startBackend(echo);
    const v2 = await startBackend(echo);
    const tunnels: string[] = [];
    serveWebSocketEcho(v1.server as import('node:http').Server, () => tunnels.push('v1'));
    const v2Handshakes: import('node:http').IncomingHttpHeaders[] = [];
    serveWebSocketEcho(v2.server as import('node:http').Server, (req) => {
      tunnels.push('v2');
      v2Handshakes.push(req.headers);
    });
    const tcpBackend = createTcpServer((socket) => {
      socket.on('data', (d: Buffer) => socket.write(d));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => tcpBackend.listen(0, '127.0.0.1', resolve));
    const tcpPort = (tcpBackend.address() as AddressInfo).port;
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  chat:
    endpoints:
      - { address: ${v1.address}, labels: { version: v1 } }
      - { address: ${v2.address}, labels: { version: v2 } }
    outlier: { enabled: false }
    access: [ { action: deny, paths: [ /admin/* ] } ]
    routes:
      - name: v2
        matches: [ { path: { type: PathPrefix, value: /v2 } } ]
        filters: [ { type: RequestHeaderModifier, requestHeaderModifier: { set: [ { name: x-route, value: v2 } ], remove: [ x-secret ] } } ]
        backendRefs: [ { subset: { version: v2 } } ]
      - { name: v1, backendRefs: [ { subset: { version: v1 } } ] }
    faults:
      - { name: ws-abort, match: { route: v2, headers: [ { name: x-chaos, value: "1" } ] }, abort: { status: 503 }, duration: 1h }
  db:
    endpoints: [ { address: 127.0.0.1:${tcpPort} } ]
    tcp: { listen: 127.0.0.1:0 }
    outlier: { enabled: false }
    retries: { attempts: 1 }
`);
    try {
      // Route: /v2 tunnels reach v2 (the echo server answers the handshake; the route decided where).
      const ws = await openWebSocket(meshd.outbound, 'chat', '/v2/socket', { 'x-secret': 'token' });
      assert.equal(ws.status, 101);
      // The route's RequestHeaderModifier applies to the handshake as to any request.
      assert.deepEqual(
        v2Handshakes.map((h) => [h['x-route'], h['x-secret']]),
        [['v2', undefined]],
      );
      ws.send('hello');
      assert.equal(await ws.receive(), 'echo:hello');
      ws.close();
      assert.deepEqual(tunnels, ['v2'], 'the /v2 route took the tunnel to v2');
      // Access: a denied path is refused at the handshake.
      const denied = await openWebSocket(meshd.outbound, 'chat', '/admin/socket');
      assert.equal(denied.status, 403);
      denied.close();
      // Fault: selected by route and header, labelled on the handshake's answer.
      const faulted = await openWebSocket(meshd.outbound, 'chat', '/v2/socket', { 'x-chaos': '1' });
      assert.equal(faulted.status, 503);
      assert.match(faulted.responseHead, /x-meshd-fault: ws-abort/i);
      faulted.close();
      // Counted as requests like any other: the refused handshake against the service, the tunnels against their route.
      const counted = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.equal(metricValue(counted, 'meshd_requests_total', { service: 'chat', endpoint: 'none', code_class: '4xx' }), 1);
      assert.equal(metricValue(counted, 'meshd_route_requests_total', { service: 'chat', route: 'v2', code_class: '1xx' }), 1);

      // TCP: a fault added through the admin API cuts new connections; removed, they pass again.
      const tcpAddress = (await meshd.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'tcp'))['address'] as string;
      const echoOnce = (): Promise<string> =>
        new Promise((resolve) => {
          const [host, port] = splitAddress(tcpAddress);
          const socket = connect(port, host, () => socket.write('ping'));
          let got = '';
          socket.on('data', (d: Buffer) => {
            got += d.toString();
            socket.end();
          });
          socket.on('error', () => resolve(`error:${got}`));
          socket.on('close', () => resolve(got === '' ? 'closed' : got));
        });
      assert.equal(await echoOnce(), 'ping');
      const added = await admin(meshd, 'POST', '/faults', { service: 'db', name: 'cut', abort: { reset: true }, duration: '1m' });
      assert.equal(added.status, 201, added.body);
      // Cut before any byte: a reset or a close, never the echo.
      assert.ok(['closed', 'error:'].includes(await echoOnce()));
      await meshd.waitForLog((l) => l['fault'] === 'cut');
      assert.equal((await admin(meshd, 'DELETE', '/faults/db/cut')).status, 200);
      assert.equal(await echoOnce(), 'ping');
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.equal(metricValue(metrics, 'meshd_faults_injected_total', { service: 'db', fault: 'cut', action: 'reset' }), 1);
      // The cut connection is counted as the fault it was, not as a failed connect.
      assert.equal(metricValue(metrics, 'meshd_tcp_connections_total', { service: 'db', result: 'fault_abort' }), 1);
      assert.equal(metricValue(metrics, 'meshd_tcp_connections_total', { service: 'db', result: 'connect_failed' }), 0);
      assert.equal(metricValue(metrics, 'meshd_faults_injected_total', { service: 'chat', fault: 'ws-abort', action: 'abort' }), 1);
    } finally {
      await meshd.stop();
      await Promise.all([v1.close(), v2.close(), new Promise((r) => tcpBackend.close(r))]);
    }
  });
});

describe('canary driven by the feedback loop', () => {
  const canaryConfig = (v1: Backend, v2: Backend, extra = '', steps = '[ 10, 50, 100 ]') => `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
${extra}
services:
  users:
    endpoints:
      - { address: ${v1.address}, labels: { version: v1 } }
      - { address: ${v2.address}, labels: { version: v2 } }
    outlier: { enabled: false }
    retries: { attempts: 1 }
    canary:
      stable: { version: v1 }
      canary: { version: v2 }
      steps: ${steps}
      dwell: 1s
      minRequests: 40
      maxSuccessRateDrop: 0.01
      # These tests judge on success rate: a loaded machine's latency noise must not decide (latency rollbacks are unit-tested).
      latencyFloor: 500ms
`;

  it('rolls back a v2 that fails 5 % within its first step, and keeps it rolled back', async (t) => {
    const v1 = await startBackend(echo);
    let served = 0;
    const v2 = await startBackend((req, res, backend) => {
      served++;
      if (served % 20 === 0) {
        res.writeHead(500);
        res.end('boom');
      } else echo(req, res, backend);
    });
    const meshd = await startDaemon(canaryConfig(v1, v2));
    try {
      const deadline = Date.now() + 20_000;
      let rolledBack: Record<string, unknown> | undefined;
      while (Date.now() < deadline && rolledBack === undefined) {
        await drive(meshd, 100, { host: 'users', parallel: 10 });
        rolledBack = meshd.logs.find((l) => l['event'] === 'canary' && l['action'] === 'rollback');
      }
      assert.ok(rolledBack !== undefined, 'rolled back');
      t.diagnostic(`rollback: ${JSON.stringify(rolledBack)}`);
      assert.equal(rolledBack['from'], 10, 'within its first step');
      assert.equal(rolledBack['reason'], 'success_rate');
      const after = await drive(meshd, 200, { host: 'users' });
      assert.ok(
        after.every((r) => r.port === String(v1.port)),
        'no traffic to v2 after the rollback',
      );
      await sleep(1_500);
      const svc = (await state(meshd)).services.find((s) => s.name === 'users');
      assert.equal(svc?.canary?.phase, 'rolled_back');
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.equal(metricValue(metrics, 'meshd_canary_weight_percent', { service: 'users' }), 0);
      // An operator may restart it.
      const restart = await admin(meshd, 'POST', '/canary/users/restart', {});
      assert.equal(restart.status, 200, restart.body);
      assert.equal((restart.json() as { to: number }).to, 10);
    } finally {
      await meshd.stop();
      await Promise.all([v1.close(), v2.close()]);
    }
  });

  it('keeps a rollback across a restart of meshd (stateDir), and starts over when the canary changes', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'meshd-state-'));
    const v1 = await startBackend(echo);
    const v2 = await startBackend((_req, res) => {
      res.writeHead(500);
      res.end('boom');
    });
    const withState = `stateDir: ${stateDir}`;
    try {
      const first = await startDaemon(canaryConfig(v1, v2, withState));
      try {
        for (let i = 0; i < 40 && !first.logs.some((l) => l['event'] === 'canary' && l['action'] === 'rollback'); i++) {
          await drive(first, 100, { host: 'users', parallel: 10 });
        }
        assert.ok(
          first.logs.some((l) => l['action'] === 'rollback'),
          'rolled back',
        );
      } finally {
        await first.stop();
      }
      // The same config after a restart: still rolled back, no request to v2.
      const second = await startDaemon(canaryConfig(v1, v2, withState));
      try {
        const restored = await second.waitForLog((l) => l['event'] === 'canary' && l['action'] === 'restored');
        assert.equal(restored['phase'], 'rolled_back');
        assert.equal(restored['weight'], 0);
        const hitsBefore = v2.hits;
        const after = await drive(second, 200, { host: 'users', parallel: 10 });
        assert.ok(after.every((r) => r.port === String(v1.port) && r.status === 200));
        assert.equal(v2.hits, hitsBefore, 'v2 got nothing after the restart');
        assert.equal((await state(second)).services.find((s) => s.name === 'users')?.canary?.phase, 'rolled_back');
      } finally {
        await second.stop();
      }
      // Another canary definition starts over.
      const third = await startDaemon(canaryConfig(v1, v2, withState, '[ 20, 100 ]'));
      try {
        const started = await third.waitForLog((l) => l['event'] === 'canary' && (l['action'] === 'start' || l['action'] === 'restored'));
        assert.equal(started['action'], 'start');
        assert.equal(started['weight'], 20);
      } finally {
        await third.stop();
      }
    } finally {
      await Promise.all([v1.close(), v2.close()]);
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('promotes a healthy v2 to 100 % step by step; pause holds it', async () => {
    const v1 = await startBackend(echo);
    const v2 = await startBackend(echo);
    const meshd = await startDaemon(canaryConfig(v1, v2));
    try {
      assert.equal((await admin(meshd, 'POST', '/canary/users/pause', {})).status, 200);
      await drive(meshd, 300, { host: 'users', parallel: 10 });
      await sleep(1_200);
      assert.equal((await state(meshd)).services.find((s) => s.name === 'users')?.canary?.weight, 10, 'paused at its first step');
      assert.equal((await admin(meshd, 'POST', '/canary/users/resume', {})).status, 200);
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && !meshd.logs.some((l) => l['event'] === 'canary' && l['action'] === 'promote')) {
        await drive(meshd, 100, { host: 'users', parallel: 10 });
      }
      const steps = meshd.logs.filter((l) => l['event'] === 'canary' && (l['action'] === 'advance' || l['action'] === 'promote')).map((l) => l['to']);
      assert.deepEqual(steps, [50, 100, 100]);
      const after = await drive(meshd, 100, { host: 'users' });
      assert.ok(
        after.every((r) => r.port === String(v2.port)),
        'all traffic on v2 once promoted',
      );
    } finally {
      await meshd.stop();
      await Promise.all([v1.close(), v2.close()]);
    }
  });
});
