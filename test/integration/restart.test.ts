/**
 * Restarts without refusing connections: the listening socket is inherited
 * (socket activation), a new meshd starts on it, the old one drains and
 * exits. Under steady load, no connection is refused and no request fails.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startBackend } from '../helpers/backend.ts';
import { MESHD_BIN } from '../helpers/daemon.ts';
import { request, sleep } from '../helpers/http.ts';

type HarnessEvent = Record<string, unknown>;

/** test/helpers/socket-activate.py: holds a listening socket as systemd does and starts/stops meshd on it. */
function activationHarness(defaultTimeoutMs: number): {
  harness: ChildProcess;
  events: HarnessEvent[];
  waitFor: (pred: (e: HarnessEvent) => boolean, timeoutMs?: number) => Promise<HarnessEvent>;
  send: (cmd: object) => void;
} {
  const harness = spawn('python3', [fileURLToPath(new URL('../helpers/socket-activate.py', import.meta.url))], { stdio: ['pipe', 'pipe', 'inherit'] });
  const events: HarnessEvent[] = [];
  createInterface({ input: harness.stdout }).on('line', (line) => {
    try {
      events.push(JSON.parse(line) as HarnessEvent);
    } catch {
      /* not JSON */
    }
  });
  const waitFor = async (pred: (e: HarnessEvent) => boolean, timeoutMs = defaultTimeoutMs): Promise<HarnessEvent> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = events.find(pred);
      if (found !== undefined) return found;
      if (Date.now() > until) throw new Error(`event not seen; got ${JSON.stringify(events.slice(-5))}`);
      await sleep(20);
    }
  };
  const send = (cmd: object): void => void harness.stdin.write(`${JSON.stringify(cmd)}\n`);
  return { harness, events, waitFor, send };
}

describe('restart under load with an inherited listening socket', () => {
  it('refuses no connection and fails no request while one meshd hands over to the next', async (t) => {
    const backend = await startBackend((_req, res) => setTimeout(() => res.end('ok'), 30));
    const dir = mkdtempSync(join(tmpdir(), 'meshd-restart-'));
    const config = join(dir, 'meshd.yaml');
    writeFileSync(
      config,
      `admin: { listen: 127.0.0.1:0 }\noutbound: { listen: 127.0.0.1:0 }\ndrainTimeout: 5s\nservices:\n  api: { endpoints: [ { address: ${backend.address} } ] }\n`,
    );
    const { harness, waitFor, send } = activationHarness(10_000);
    const argv = [process.execPath, MESHD_BIN, 'run', '--config', config];
    try {
      const port = (await waitFor((e) => typeof e['port'] === 'number'))['port'] as number;
      send({ op: 'start', argv });
      const first = (await waitFor((e) => typeof e['started'] === 'number'))['started'] as number;
      await waitFor((e) => e['msg'] === 'meshd ready' && e['pid'] === first);
      // Steady load on fresh connections: every request needs an accept.
      let running = true;
      let ok = 0;
      const failures: string[] = [];
      const loops = Array.from({ length: 6 }, async () => {
        const stopAt = Date.now() + 20_000;
        while (running && Date.now() < stopAt) {
          try {
            const r = await request(`127.0.0.1:${port}`, { headers: { host: 'api' } });
            if (r.status === 200) ok++;
            else failures.push(String(r.status));
          } catch (err) {
            failures.push((err as NodeJS.ErrnoException).code ?? (err as Error).message);
          }
        }
      });
      await sleep(500);
      send({ op: 'start', argv });
      const second = (await waitFor((e) => typeof e['started'] === 'number' && e['started'] !== first))['started'] as number;
      await waitFor((e) => e['msg'] === 'meshd ready' && e['pid'] === second);
      send({ op: 'stop', pid: first });
      const exited = await waitFor((e) => e['exited'] === first);
      await sleep(500);
      running = false;
      await Promise.all(loops);
      t.diagnostic(`${ok} requests across the hand-over, ${failures.length} failed; old meshd exited with ${String(exited['code'])}`);
      assert.equal(exited['code'], 0);
      assert.deepEqual(failures, []);
      assert.ok(ok > 50, `load ran (${ok})`);
      send({ op: 'stop', pid: second });
      await waitFor((e) => e['exited'] === second);
    } finally {
      harness.stdin!.end();
      harness.kill();
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('with workers: 2, the supervisor accepts on the inherited socket, spreads connections over the workers and stops them all', async (t) => {
    const backend = await startBackend((_req, res) => res.end('ok'));
    const dir = mkdtempSync(join(tmpdir(), 'meshd-activated-workers-'));
    const config = join(dir, 'meshd.yaml');
    writeFileSync(
      config,
      `admin: { listen: 127.0.0.1:0 }\noutbound: { listen: 127.0.0.1:0 }\nworkers: 2\nservices:\n  api: { endpoints: [ { address: ${backend.address} } ] }\n`,
    );
    const { harness, events, waitFor, send } = activationHarness(15_000);
    try {
      const port = (await waitFor((e) => typeof e['port'] === 'number'))['port'] as number;
      send({ op: 'start', argv: [process.execPath, MESHD_BIN, 'run', '--config', config] });
      const supervisor = (await waitFor((e) => typeof e['started'] === 'number'))['started'] as number;
      await waitFor((e) => e['msg'] === 'meshd ready' && e['pid'] === supervisor);
      const outboundListening = (e: HarnessEvent): boolean => e['msg'] === 'listening' && e['listener'] === 'outbound';
      // Each process writes its own log lines: a worker's can arrive after the supervisor's "ready".
      await waitFor(() => events.filter(outboundListening).length >= 3, 5_000).catch(() => undefined);
      const listening = events.filter(outboundListening);
      assert.deepEqual(
        listening.map((e) => e['address']).sort(),
        [`127.0.0.1:${port}`, 'handed over by the supervisor', 'handed over by the supervisor'].sort(),
        'the supervisor accepts on the inherited socket; the workers bind no port of their own',
      );
      const admin = (await waitFor((e) => e['msg'] === 'listening' && e['listener'] === 'admin'))['address'] as string;

      const statuses = await Promise.all(Array.from({ length: 40 }, () => request(`127.0.0.1:${port}`, { headers: { host: 'api' } }).then((r) => r.status)));
      assert.deepEqual(new Set(statuses), new Set([200]));
      const state = (await request(admin, { path: '/debug/state' })).json() as {
        workers: { states: { services: { endpoints: { stats: { total: Record<string, number> } }[] }[] }[] };
      };
      const served = state.workers.states.map((w) => w.services[0]!.endpoints[0]!.stats.total['success'] ?? 0);
      t.diagnostic(`requests per worker, connections handed over in turn: ${JSON.stringify(served)}`);
      assert.equal(
        served.reduce((a, b) => a + b, 0),
        40,
      );
      assert.ok(
        served.every((n) => n >= 15),
        `both workers got connections: ${JSON.stringify(served)}`,
      );
      // The supervisor keeps its inherited sockets and so cannot restart itself with the runtime
      // settings; the workers it forks get them.
      const runtimes = (
        (await request(admin, { path: '/debug/state' })).json() as { workers: { states: { runtime: { v8Flags: string[]; mallocArenaMax?: string } }[] } }
      ).workers.states.map((w) => w.runtime);
      for (const r of runtimes) {
        assert.ok(r.v8Flags.includes('--max-semi-space-size=4'), JSON.stringify(r));
        assert.equal(r.mallocArenaMax, '2');
      }

      send({ op: 'stop', pid: supervisor });
      const exited = await waitFor((e) => e['exited'] === supervisor);
      assert.equal(exited['code'], 0);
      assert.ok(events.some((e) => e['msg'] === 'worker draining' && e['worker'] === 0));
      assert.ok(events.some((e) => e['msg'] === 'worker draining' && e['worker'] === 1));
    } finally {
      harness.stdin!.end();
      harness.kill();
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
