/**
 * `workers: N`: workers share the listening port, the supervisor decides
 * feedback from all workers' traffic and pushes each decision to every
 * worker, metrics and /debug/state cover the whole host, a dead worker is
 * replaced, and a reload reaches every worker.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { echo, startBackend } from '../helpers/backend.ts';
import { runMeshd, startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { request } from '../helpers/http.ts';

interface EndpointView {
  address: string;
  state: string;
  available: boolean;
  stats: { total: Record<string, number> };
}
interface ServiceView {
  name: string;
  endpoints: EndpointView[];
  feedbackDelayMs?: number;
}
interface WorkerState {
  pid: number;
  services: ServiceView[];
}
interface HostState {
  services: ServiceView[];
  workers: { wanted: number; ready: number; states: WorkerState[] };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const hostState = async (meshd: RunningDaemon): Promise<HostState> => (await request(meshd.admin, { path: '/debug/state' })).json() as HostState;
const endpointIn = (s: { services: ServiceView[] }, address: string): EndpointView => {
  const found = s.services[0]?.endpoints.find((e) => e.address === address);
  assert.ok(found !== undefined, `endpoint ${address} in state`);
  return found;
};
/** One request on its own connection, so that the kernel picks a worker for each. */
const call = (meshd: RunningDaemon): Promise<number> => request(meshd.outbound, { headers: { host: 'api' } }).then((r) => r.status);

/** Failures in a row that eject; each worker alone must stay below it for the test to prove anything. */
const THRESHOLD = 16;

describe('workers', () => {
  it('ejects a host from failures spread over both workers and every worker obeys within 100 ms', async (t) => {
    const good = await startBackend((_req, res) => res.end('ok'));
    const bad = await startBackend((_req, res) => {
      res.statusCode = 500;
      res.end('broken');
    });
    const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
workers: 2
services:
  api:
    endpoints: [ { address: ${good.address} }, { address: ${bad.address} } ]
    balancer: { algorithm: round-robin }
    retries: { attempts: 1 }
    outlier:
      consecutiveServerErrors: ${THRESHOLD}
      consecutiveGatewayFailures: 1000
      failurePercentage: { threshold: 1, minRequests: 100000, minFailures: 100000 }
      successRate: { minRequests: 100000 }
      baseEjection: 60s
`);
    try {
      await meshd.waitForLog((l) => l.msg === 'meshd ready', 20_000);
      const before = await hostState(meshd);
      assert.equal(before.workers.ready, 2);
      assert.equal(new Set(before.workers.states.map((w) => w.pid)).size, 2, 'two worker processes');

      // Paced so that each sample reaches the supervisor before the next request is sent.
      let sent = 0;
      let ejected = false;
      const from = meshd.logs.length;
      for (let i = 0; i < 400 && !ejected; i++) {
        await call(meshd);
        sent++;
        await sleep(30);
        ejected = meshd.logs.slice(from).some((l) => l['event'] === 'eject');
      }
      const eject = await meshd.waitForLog((l) => l['event'] === 'eject', 2_000, from);
      assert.equal(eject['endpoint'], bad.address);
      assert.equal(eject['reason'], 'consecutive_server_errors');
      assert.equal(eject['worker'], undefined, 'decided by the supervisor, not by a worker');
      await sleep(100);

      const state = await hostState(meshd);
      const perWorker = state.workers.states.map((w) => endpointIn(w, bad.address).stats.total['http_5xx'] ?? 0);
      t.diagnostic(
        `failures seen per worker ${JSON.stringify(perWorker)}, ${sent} requests sent; supervisor's count ${endpointIn(state, bad.address).stats.total['http_5xx']}`,
      );
      assert.ok(
        perWorker.every((n) => n > 0 && n < THRESHOLD),
        `each worker saw some failures but fewer than ${THRESHOLD}: ${JSON.stringify(perWorker)}`,
      );
      assert.equal(
        endpointIn(state, bad.address).stats.total['http_5xx'],
        perWorker[0]! + perWorker[1]!,
        "the supervisor's statistics are the sum of the workers'",
      );
      assert.equal(endpointIn(state, bad.address).state, 'ejected');
      for (const w of state.workers.states) {
        assert.equal(endpointIn(w, bad.address).available, false, `worker ${w.pid} no longer picks the ejected host`);
        const delay = w.services[0]?.feedbackDelayMs;
        assert.ok(delay !== undefined && delay < 100, `decision reached worker ${w.pid} after ${delay} ms`);
        t.diagnostic(`decision reached worker ${w.pid} after ${delay} ms`);
      }

      const badHits = bad.hits;
      const after = await Promise.all(Array.from({ length: 20 }, () => call(meshd)));
      assert.deepEqual(new Set(after), new Set([200]));
      assert.equal(bad.hits, badHits, 'no worker sends to the ejected host');

      // /metrics adds up both workers' counters.
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      let counted = 0;
      for (const line of metrics.split('\n')) if (line.startsWith('meshd_requests_total{service="api"')) counted += Number(line.split(' ').pop());
      assert.equal(counted, sent + after.length, 'requests_total summed over the workers');
      assert.match(metrics, /meshd_feedback_decisions_total\{service="api",decision="eject",reason="consecutive_server_errors"\} 1\b/);
    } finally {
      await meshd.stop();
      await good.close();
      await bad.close();
    }
  });

  it('replaces a worker that dies and reloads every worker', async () => {
    const a = await startBackend((_req, res) => res.end('a'));
    const b = await startBackend((_req, res) => res.end('b'));
    const config = (endpoints: string[]): string => `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
workers: 2
services:
  api:
    endpoints: [ ${endpoints.map((e) => `{ address: ${e} }`).join(', ')} ]
`;
    const meshd = await startDaemon(config([a.address]));
    try {
      await meshd.waitForLog((l) => l.msg === 'meshd ready', 20_000);
      const victim = (await hostState(meshd)).workers.states[0]!.pid;
      const from = meshd.logs.length;
      process.kill(victim, 'SIGKILL');
      await meshd.waitForLog((l) => l.msg === 'worker exited; restarting it' && l['workerPid'] === victim, 5_000, from);
      await meshd.waitForLog((l) => l.msg === 'worker ready', 10_000, from);
      const statuses = await Promise.all(Array.from({ length: 20 }, () => call(meshd)));
      assert.deepEqual(new Set(statuses), new Set([200]));
      const replaced = await hostState(meshd);
      assert.equal(replaced.workers.ready, 2);
      assert.ok(!replaced.workers.states.some((w) => w.pid === victim));
      assert.equal((await request(meshd.admin, { path: '/readyz' })).status, 200);

      const reloadFrom = meshd.logs.length;
      meshd.writeConfig(config([a.address, b.address]));
      meshd.signal('SIGHUP');
      await meshd.waitForLog((l) => l.msg === 'config reloaded', 10_000, reloadFrom);
      const reloaded = await hostState(meshd);
      for (const w of reloaded.workers.states) assert.deepEqual(w.services[0]!.endpoints.map((e) => e.address).sort(), [a.address, b.address].sort());
    } finally {
      await meshd.stop();
      await a.close();
      await b.close();
    }
  });

  it('starts, reloads and restarts workers with a config larger than an environment variable may be', async () => {
    const a = await startBackend((_req, res) => res.end('a'));
    const b = await startBackend((_req, res) => res.end('b'));
    // Over Linux's 128 KiB cap on one environment string, which the config once travelled in.
    const padding = (kib: number): string => Array.from({ length: kib * 16 }, (_, i) => `# ${String(i).padStart(8, '0')} ${'x'.repeat(50)}`).join('\n');
    const config = (endpoints: string[], kib: number): string => `${padding(kib)}
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
workers: 2
services:
  api:
    endpoints: [ ${endpoints.map((e) => `{ address: ${e} }`).join(', ')} ]
`;
    const meshd = await startDaemon(config([a.address], 8));
    try {
      await meshd.waitForLog((l) => l.msg === 'meshd ready', 20_000);
      const reloadFrom = meshd.logs.length;
      meshd.writeConfig(config([a.address, b.address], 200));
      meshd.signal('SIGHUP');
      await meshd.waitForLog((l) => l.msg === 'config reloaded', 10_000, reloadFrom);

      const victim = (await hostState(meshd)).workers.states[0]!.pid;
      const from = meshd.logs.length;
      process.kill(victim, 'SIGKILL');
      await meshd.waitForLog((l) => l.msg === 'worker exited; restarting it' && l['workerPid'] === victim, 5_000, from);
      await meshd.waitForLog((l) => l.msg === 'worker ready', 10_000, from);
      const state = await hostState(meshd);
      assert.equal(state.workers.ready, 2);
      for (const w of state.workers.states)
        assert.deepEqual(w.services[0]!.endpoints.map((e) => e.address).sort(), [a.address, b.address].sort(), `worker ${w.pid} runs the grown config`);
      const statuses = await Promise.all(Array.from({ length: 20 }, () => call(meshd)));
      assert.deepEqual(new Set(statuses), new Set([200]));
      assert.equal(meshd.proc.exitCode, null, 'the supervisor is still running');
    } finally {
      await meshd.stop();
      await a.close();
      await b.close();
    }
  });

  it('refuses port 0 for a TCP listener shared by several workers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-workers-'));
    try {
      const file = join(dir, 'meshd.yaml');
      writeFileSync(file, 'workers: 2\nservices:\n  db:\n    endpoints: [ { address: 127.0.0.1:5432 } ]\n    tcp: { listen: 127.0.0.1:0 }\n');
      const result = await runMeshd(['check', '--config', file]);
      assert.equal(result.code, 1);
      assert.match(result.stderr + result.stdout, /services\.db\.tcp\.listen: port 0 \(any free port\) cannot be shared by several workers/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('hands admin fault injections and the canary’s decisions to every worker, and the restored canary to new workers', async () => {
    const v1 = await startBackend(echo);
    const v2 = await startBackend(echo);
    const stateDir = mkdtempSync(join(tmpdir(), 'meshd-workers-state-'));
    const config = `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
workers: 2
stateDir: ${stateDir}
services:
  api:
    endpoints: [ { address: ${v1.address}, labels: { version: v1 } }, { address: ${v2.address}, labels: { version: v2 } } ]
    outlier: { enabled: false }
    canary: { stable: { version: v1 }, canary: { version: v2 }, steps: [ 10, 100 ], dwell: 1h, minRequests: 1000000 }
`;
    let meshd = await startDaemon(config);
    /** Replies of `n` requests, each on its own connection so that both workers take some. */
    const replies = (n: number) => Promise.all(Array.from({ length: n }, () => request(meshd.outbound, { headers: { host: 'api' } })));
    try {
      for (let i = 0; i < 100 && (await hostState(meshd)).workers.ready < 2; i++) await sleep(50);
      const added = await request(meshd.admin, {
        method: 'POST',
        path: '/faults',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ service: 'api', name: 'teapot', abort: { status: 418 }, duration: '3s' }),
      });
      assert.equal(added.status, 201, added.body);
      await sleep(200);
      const faulted = await replies(40);
      assert.ok(
        faulted.every((r) => r.status === 418 && r.headers['x-meshd-fault'] === 'teapot'),
        JSON.stringify(faulted.map((r) => r.status)),
      );
      assert.equal((await hostState(meshd)).workers.ready, 2);
      // It expires in every worker by itself.
      await sleep(3_200);
      assert.ok((await replies(40)).every((r) => r.status === 200));

      // The supervisor's canary decision reaches both workers: promote sends everything to v2.
      const promoted = await request(meshd.admin, { method: 'POST', path: '/canary/api/promote', headers: { 'content-type': 'application/json' }, body: '{}' });
      assert.equal(promoted.status, 200, promoted.body);
      await sleep(200);
      const after = await replies(60);
      assert.ok(
        after.every((r) => r.headers['x-backend-port'] === String(v2.port)),
        'every worker sends all to v2',
      );
      const workers = (await hostState(meshd)).workers.states as unknown as { services: { canary?: { weight: number; decidedBy?: string } }[] }[];
      assert.deepEqual(
        workers.map((w) => w.services[0]?.canary),
        [
          { phase: 'promoted', weight: 100, decidedBy: 'supervisor' },
          { phase: 'promoted', weight: 100, decidedBy: 'supervisor' },
        ],
      );

      // Restarted: the supervisor takes the promotion up from stateDir, and its workers start with it
      // (it comes in their start message, before they take a request).
      await meshd.stop();
      const v1Hits = v1.hits;
      meshd = await startDaemon(config);
      const restored = await meshd.waitForLog((l) => l['event'] === 'canary' && l['action'] === 'restored');
      assert.equal(restored['phase'], 'promoted');
      const first = await replies(60);
      assert.ok(
        first.every((r) => r.headers['x-backend-port'] === String(v2.port)),
        JSON.stringify(first.map((r) => r.headers['x-backend-port'])),
      );
      assert.equal(v1.hits, v1Hits, 'no request went to the stable side after the restart');
    } finally {
      await meshd.stop();
      await Promise.all([v1.close(), v2.close()]);
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
