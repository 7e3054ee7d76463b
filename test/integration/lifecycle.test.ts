/**
 * The daemon as a process: config reloads (SIGHUP, file change, bad config),
 * file discovery, drain on SIGTERM, the systemd notify protocol on a real
 * unix datagram socket, and the CLI's exit codes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startBackend, type Backend } from '../helpers/backend.ts';
import { runMeshd, startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { metricValue, request, sleep } from '../helpers/http.ts';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

function serviceConfig(services: Record<string, Backend[]>, extra = ''): string {
  const lines = ['admin: { listen: 127.0.0.1:0 }', 'outbound: { listen: 127.0.0.1:0 }', extra, 'services:'];
  for (const [name, backends] of Object.entries(services)) {
    lines.push(`  ${name}:`, '    endpoints:');
    for (const b of backends) lines.push(`      - { address: ${b.address} }`);
    if (backends.length === 0) lines.push('      []');
  }
  return `${lines.join('\n')}\n`;
}

/** Sends requests back to back on `concurrency` keep-alive connections until stopped; counts failures. */
function steadyLoad(meshd: RunningDaemon, host: string, concurrency: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let running = true;
  let ok = 0;
  const failures: string[] = [];
  const loop = async (): Promise<void> => {
    const stopAt = Date.now() + 30_000;
    while (running && Date.now() < stopAt) {
      try {
        const reply = await request(meshd.outbound, { headers: { host }, agent });
        if (reply.status === 200) ok++;
        else failures.push(`${reply.status} ${String(reply.headers['x-meshd-error'])}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  return {
    get ok() {
      return ok;
    },
    failures,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

describe('config reload', () => {
  it('applies a new config on SIGHUP and on file change, with zero failed requests under load', async () => {
    const a = await startBackend();
    const b = await startBackend();
    const meshd = await startDaemon(serviceConfig({ users: [a] }));
    const load = steadyLoad(meshd, 'users', 8);
    try {
      await sleep(300);
      // SIGHUP: add an endpoint and a service.
      meshd.writeConfig(serviceConfig({ users: [a, b], orders: [b] }));
      meshd.signal('SIGHUP');
      await meshd.waitForLog((l) => l.msg === 'config reloaded');
      assert.equal((await request(meshd.outbound, { headers: { host: 'orders' } })).status, 200);
      await sleep(300);
      const hitsOnB = b.hits;
      assert.ok(hitsOnB > 0, 'the new endpoint receives traffic');
      // File change alone (no signal): remove the first endpoint.
      const mark = meshd.logs.length;
      meshd.writeConfig(serviceConfig({ users: [b], orders: [b] }));
      await meshd.waitForLog((l) => l.msg === 'config reloaded', 10_000, mark);
      await sleep(300);
      const hitsOnA = a.hits;
      await sleep(300);
      assert.equal(a.hits, hitsOnA, 'the removed endpoint gets no new requests');
    } finally {
      await load.stop();
    }
    assert.deepEqual(load.failures, [], 'no request failed during the reloads');
    assert.ok(load.ok > 100, `load ran (${load.ok} requests)`);
    const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
    assert.ok(metricValue(metrics, 'meshd_config_reloads_total', { result: 'success' }) >= 2);
    await meshd.stop();
    await Promise.all([a.close(), b.close()]);
  });

  it('rejects a bad config with a logged error, keeps serving the old one, and counts it', async () => {
    const a = await startBackend();
    const meshd = await startDaemon(serviceConfig({ users: [a] }));
    try {
      for (const bad of ['services: [unclosed', 'services:\n  users:\n    timeout: fast\n', 'surprise: true\n']) {
        const mark = meshd.logs.length;
        meshd.writeConfig(bad);
        meshd.signal('SIGHUP');
        const line = await meshd.waitForLog((l) => l.msg.startsWith('config rejected'), 10_000, mark);
        assert.ok(Array.isArray(line['problems']) && (line['problems'] as string[]).length > 0);
        assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200, 'old config still serves');
      }
      const timeoutProblem = meshd.logs.find((l) => JSON.stringify(l['problems'] ?? '').includes('services.users.timeout'));
      assert.ok(timeoutProblem, 'the problem names its path');
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_config_reloads_total', { result: 'failure' }) >= 3);
      const state = (await request(meshd.admin, { path: '/debug/state' })).json() as { config: { lastReload: { result: string } } };
      assert.equal(state.config.lastReload.result, 'failure');
    } finally {
      await meshd.stop();
      await a.close();
    }
  });
});

describe('file discovery', () => {
  it('follows the endpoints file, and keeps the last good set when it breaks', async () => {
    const a = await startBackend();
    const b = await startBackend();
    const meshd = await startDaemon(
      `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  users:
    endpointsFile: users-endpoints.yaml
`,
      { files: { 'users-endpoints.yaml': `endpoints:\n  - { address: ${a.address} }\n` } },
    );
    const file = join(meshd.dir, 'users-endpoints.yaml');
    const portOf = async (): Promise<number> => ((await request(meshd.outbound, { headers: { host: 'users' } })).json() as { port: number }).port;
    try {
      assert.equal(await portOf(), a.port);
      // Atomic replace (write a temp file, rename over): how config management writes.
      writeFileSync(`${file}.tmp`, `endpoints:\n  - { address: ${b.address} }\n`);
      renameSync(`${file}.tmp`, file);
      await meshd.waitForLog((l) => l.msg === 'endpoints changed' && JSON.stringify(l['added']).includes(b.address));
      assert.equal(await portOf(), b.port);
      // Rewritten half-way: truncated mid-entry.
      writeFileSync(file, `endpoints:\n  - { address: ${a.address}, zo`);
      await meshd.waitForLog((l) => l.msg.startsWith('endpoints file rejected'));
      for (let i = 0; i < 4; i++) assert.equal(await portOf(), b.port, 'last good set kept');
      // Valid YAML, invalid content.
      writeFileSync(file, 'endpoints:\n  - { address: not-an-address }\n');
      await sleep(600);
      assert.equal(await portOf(), b.port);
      const metrics = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(metrics, 'meshd_discovery_errors_total', { service: 'users', source: 'file' }) >= 2);
      const state = (await request(meshd.admin, { path: '/debug/state' })).json() as { services: { discovery: { file: { lastError: string } } }[] };
      assert.match(state.services[0]?.discovery.file.lastError ?? '', /address/);
      // Repaired: takes effect again.
      const mark = meshd.logs.length;
      writeFileSync(file, `endpoints:\n  - { address: ${a.address} }\n`);
      await meshd.waitForLog((l) => l.msg === 'endpoints changed' && JSON.stringify(l['added']).includes(a.address), 10_000, mark);
      assert.equal(await portOf(), a.port);
    } finally {
      await meshd.stop();
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('drain on SIGTERM', () => {
  it('finishes requests in flight, refuses none of them, and exits 0', async () => {
    const slow = await startBackend((_req, res) => setTimeout(() => res.end('done'), 800));
    const meshd = await startDaemon(serviceConfig({ slow: [slow] }, 'drainTimeout: 5s'));
    try {
      const inFlight = Array.from({ length: 10 }, () => request(meshd.outbound, { headers: { host: 'slow' } }));
      await sleep(200);
      meshd.signal('SIGTERM');
      const replies = await Promise.all(inFlight);
      assert.deepEqual(
        replies.map((r) => `${r.status} ${r.body}`),
        Array.from({ length: 10 }, () => '200 done'),
      );
      assert.equal(await meshd.exited, 0);
      assert.ok(meshd.logs.some((l) => l.msg.startsWith('stopping')));
    } finally {
      await meshd.stop();
      await slow.close();
    }
  });

  it('gives up after the drain timeout and still exits 0', async () => {
    const hang = await startBackend(() => {});
    const meshd = await startDaemon(serviceConfig({ hang: [hang] }, 'drainTimeout: 300ms'));
    try {
      const stuck = request(meshd.outbound, { headers: { host: 'hang' } }).catch((err: unknown) => err);
      await sleep(100);
      meshd.signal('SIGTERM');
      assert.equal(await meshd.exited, 0);
      assert.ok(meshd.logs.some((l) => l.msg.startsWith('drain timeout reached')));
      assert.ok((await stuck) instanceof Error);
    } finally {
      await meshd.stop();
      await hang.close();
    }
  });
});

describe('systemd notify protocol', () => {
  it('sends READY, WATCHDOG at half of WATCHDOG_USEC, RELOADING/READY on reload, and STOPPING', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-notify-'));
    const socketPath = join(dir, 'notify.sock');
    const receiver = spawn('python3', [fileURLToPath(new URL('../helpers/notify-receiver.py', import.meta.url)), socketPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const messages: { at: number; text: string }[] = [];
    let listening!: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    createInterface({ input: receiver.stdout }).on('line', (line) => {
      const parsed = JSON.parse(line) as { listening?: string; message?: string };
      if (parsed.listening !== undefined) listening();
      if (parsed.message !== undefined && parsed.message !== 'BARRIER=1') messages.push({ at: Date.now(), text: parsed.message });
    });
    await ready;
    const a = await startBackend();
    const meshd = await startDaemon(serviceConfig({ users: [a] }), { env: { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '400000' } });
    try {
      const waitFor = async (pred: (t: string) => boolean, from = 0): Promise<number> => {
        for (let i = 0; i < 200; i++) {
          const idx = messages.findIndex((m, j) => j >= from && pred(m.text));
          if (idx >= 0) return idx;
          await sleep(25);
        }
        throw new Error(`notify message not seen; got ${JSON.stringify(messages.map((m) => m.text))}`);
      };
      const readyIdx = await waitFor((t) => t.split('\n').includes('READY=1'));
      assert.match(messages[readyIdx]!.text, /STATUS=serving 1 service/);
      await sleep(1_100);
      const pings = messages.filter((m) => m.text === 'WATCHDOG=1');
      assert.ok(pings.length >= 3, `watchdog pings every ~200 ms (got ${pings.length} in ~1.1 s)`);
      const gaps = pings.slice(1).map((p, i) => p.at - pings[i]!.at);
      assert.ok(
        gaps.every((g) => g < 400),
        `no gap reaches WATCHDOG_USEC (gaps ${gaps.join(',')})`,
      );
      meshd.signal('SIGHUP');
      const reloadingIdx = await waitFor((t) => t.includes('RELOADING=1'));
      assert.match(messages[reloadingIdx]!.text, /MONOTONIC_USEC=\d+/);
      await waitFor((t) => t.split('\n').includes('READY=1'), reloadingIdx + 1);
      meshd.signal('SIGTERM');
      await waitFor((t) => t.includes('STOPPING=1'));
      assert.equal(await meshd.stop(), 0);
    } finally {
      receiver.kill();
      await a.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('meshd command line', () => {
  it('validates every example config with `meshd check`', async () => {
    const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml'));
    assert.ok(files.length >= 2);
    for (const f of files) {
      const { code, stdout, stderr } = await runMeshd(['check', '--config', join(EXAMPLES, f)]);
      assert.equal(code, 0, `${f}: ${stderr}`);
      assert.match(stdout, /ok/);
    }
  });

  it('names each problem with its path and line, and exits 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-check-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'services:\n  users:\n    timeout: fast\n    endpoints:\n      - { address: nohost }\n    colour: blue\n');
    const { code, stderr } = await runMeshd(['check', '--config', file]);
    assert.equal(code, 1);
    assert.match(stderr, /bad\.yaml:3: services\.users\.timeout: expected a duration like "250ms", got "fast"/);
    assert.match(stderr, /services\.users\.endpoints\[0\]\.address: expected an address/);
    assert.match(stderr, /bad\.yaml:6: services\.users\.colour: unknown key/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to start on a missing, unreadable, non-YAML or invalid config, saying why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-run-'));
    const unreadable = join(dir, 'unreadable.yaml');
    writeFileSync(unreadable, 'services: {}\n');
    chmodSync(unreadable, 0o000);
    const cases: [string, RegExp][] = [
      [join(dir, 'missing.yaml'), /file not found/],
      [join(dir, 'notyaml.yaml'), /not valid YAML/],
      [join(dir, 'invalid.yaml'), /drainTimeout: expected a duration/],
    ];
    writeFileSync(join(dir, 'notyaml.yaml'), 'services: {users: [}\n');
    writeFileSync(join(dir, 'invalid.yaml'), 'drainTimeout: 10\n');
    // root reads anything; drop privileges for the unreadable case only when we can.
    if (process.getuid?.() !== 0) cases.push([unreadable, /permission denied/]);
    for (const [path, expected] of cases) {
      const { code, stderr } = await runMeshd(['run', '--config', path]);
      assert.equal(code, 1, path);
      assert.match(stderr, expected);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints the version and per-command help', async () => {
    const version = await runMeshd(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^meshd \d+\.\d+\.\d+/);
    for (const command of ['run', 'check']) {
      const help = await runMeshd([command, '--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`Usage: meshd ${command}`));
    }
    const unknown = await runMeshd(['frobnicate']);
    assert.equal(unknown.code, 2);
  });

  it('fails to start with a clear log line when the port is taken', async () => {
    const a = await startBackend();
    const dir = mkdtempSync(join(tmpdir(), 'meshd-port-'));
    const file = join(dir, 'taken.yaml');
    writeFileSync(file, `admin: { listen: 127.0.0.1:0 }\noutbound: { listen: ${a.address} }\n`);
    const result = await runMeshd(['run', '--config', file]);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /EADDRINUSE/);
    await a.close();
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('meshd demo', () => {
  it('runs the live demonstration for a bounded time and stops cleanly', async () => {
    const { code, stdout } = await runMeshd(['demo', '--duration', '3s']);
    assert.equal(code, 0);
    assert.match(stdout, /endpoint\s+behaviour\s+share/);
    for (const name of ['steady', 'slowpoke', 'flaky']) assert.match(stdout, new RegExp(`^${name}\\s`, 'm'));
    assert.match(stdout, /callers: \d+ requests in the last second/);
    assert.match(stdout, /demo stopped/);
  });

  it('refuses options that do not apply', async () => {
    assert.equal((await runMeshd(['demo', '--duration', 'soon'])).code, 2);
    assert.equal((await runMeshd(['demo', '--config', 'x.yaml'])).code, 2);
  });
});

describe('meshd ca / cert', () => {
  it('creates a CA, issues a host certificate that openssl verifies, and inspects it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-pki-'));
    try {
      const ca = await runMeshd(['ca', 'init', '--dir', join(dir, 'ca'), '--trust-domain', 'prod.example']);
      assert.equal(ca.code, 0, ca.stderr);
      const again = await runMeshd(['ca', 'init', '--dir', join(dir, 'ca'), '--trust-domain', 'prod.example']);
      assert.equal(again.code, 2, 'an existing CA is not overwritten without --force');
      const issued = await runMeshd([
        'cert',
        'issue',
        '--ca',
        join(dir, 'ca'),
        '--identity',
        'spiffe://prod.example/host/web-1',
        '--ttl',
        '2h',
        '--out',
        join(dir, 'web-1'),
      ]);
      assert.equal(issued.code, 0, issued.stderr);
      const { statSync } = await import('node:fs');
      assert.equal(statSync(join(dir, 'ca', 'ca-key.pem')).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, 'web-1', 'key.pem')).mode & 0o777, 0o600);
      const { execFileSync } = await import('node:child_process');
      const verified = execFileSync('openssl', ['verify', '-CAfile', join(dir, 'ca', 'ca.pem'), join(dir, 'web-1', 'cert.pem')]).toString();
      assert.match(verified, /OK/);
      const inspect = await runMeshd(['cert', 'inspect', join(dir, 'web-1', 'cert.pem')]);
      assert.equal(inspect.code, 0);
      assert.match(inspect.stdout, /identity:\s+spiffe:\/\/prod\.example\/host\/web-1/);
      assert.match(inspect.stdout, /\(valid\)/);
      const wrongDomain = await runMeshd(['cert', 'issue', '--ca', join(dir, 'ca'), '--identity', 'spiffe://other.example/host/x', '--out', join(dir, 'x')]);
      assert.equal(wrongDomain.code, 2);
      assert.match(wrongDomain.stderr, /trust domain/);
      writeFileSync(join(dir, 'garbage.pem'), 'not a certificate');
      assert.equal((await runMeshd(['cert', 'inspect', join(dir, 'garbage.pem')])).code, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
