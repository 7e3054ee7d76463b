/**
 * The /metrics exposition passes promtool's lint (`promtool check metrics`),
 * from a single process and from the supervisor of several workers, with
 * traffic so that every per-service and per-endpoint family is present.
 * The scrape listener (`metrics:`) serves that and nothing else, to the
 * sources of its allowFrom only, following reloads; curl is the scraper.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { execFile, spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startBackend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { metricValue, request, sleep } from '../helpers/http.ts';

const run = promisify(execFile);

function promtoolCheck(text: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => resolve({ code, out }));
    child.stdin.end(text);
  });
}

describe('metrics exposition', () => {
  for (const workers of [1, 2]) {
    it(`passes promtool check metrics (workers: ${workers})`, async () => {
      const backend = await startBackend();
      const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
metrics: { listen: 127.0.0.1:0 }
workers: ${workers}
services:
  users: { endpoints: [ { address: ${backend.address} } ] }
`);
      try {
        for (let i = 0; i < 5; i++) assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200);
        await request(meshd.outbound, { headers: { host: 'nosuch' } });
        const body = (await request(meshd.admin, { path: '/metrics' })).body;
        assert.match(body, /^meshd_requests_total\{/m);
        assert.match(body, /^meshd_nodejs_active_handles\{/m, 'the by-type runtime gauges stay');
        // Facts of one process are not added up over workers: the descriptor limit is each process's, the start time the oldest.
        const fdLimit = Number((await readFile(`/proc/${String(meshd.proc.pid)}/limits`, 'utf8')).match(/Max open files\s+(\d+)/)?.[1]);
        assert.equal(metricValue(body, 'meshd_process_max_fds'), fdLimit);
        assert.ok(metricValue(body, 'meshd_process_start_time_seconds') > 1_700_000_000, 'the start time is there');
        const { code, out } = await promtoolCheck(body);
        assert.equal(out.trim(), '', out);
        assert.equal(code, 0);
        // The scrape listener (served by the supervisor with workers) exposes the same families.
        const scrapeAt = (await meshd.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'metrics'))['address'] as string;
        const scraped = (await request(scrapeAt, { path: '/metrics' })).body;
        assert.ok(metricValue(scraped, 'meshd_requests_total', { service: 'users', code_class: '2xx' }) >= 5);
        assert.equal((await promtoolCheck(scraped)).code, 0);
      } finally {
        await meshd.stop();
        await backend.close();
      }
    });
  }
});

describe('attempts per endpoint', () => {
  for (const workers of [1, 2]) {
    it(`count the failures a retry hid, on the endpoint that failed (workers: ${workers})`, async () => {
      const good = await startBackend();
      const bad = await startBackend((_req, res) => {
        res.writeHead(503);
        res.end('down');
      });
      const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
workers: ${workers}
services:
  users:
    endpoints: [ { address: ${good.address} }, { address: ${bad.address} } ]
    balancer: { algorithm: round-robin }
    retries: { attempts: 3, retryOn: [ 503 ] }
`);
      try {
        for (let i = 0; i < 20; i++) assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200);
        const attempts = (text: string, endpoint: string, outcome: string): number =>
          metricValue(text, 'meshd_endpoint_attempts_total', { service: 'users', endpoint, outcome });
        // With workers, each counts its own attempts (the supervisor's copy, from their samples for the outlier
        // detector, is left out); give a scrape that races the last answers a moment.
        let text = '';
        for (let waited = 0; waited < 3_000; waited += 100) {
          text = (await request(meshd.admin, { path: '/metrics' })).body;
          if (attempts(text, good.address, 'success') === 20) break;
          await sleep(100);
        }
        assert.equal(
          attempts(text, good.address, 'success'),
          20,
          text
            .split('\n')
            .filter((l) => l.includes('attempts'))
            .join('\n'),
        );
        assert.ok(bad.hits >= 1 && attempts(text, bad.address, 'http_5xx') === bad.hits, `${bad.hits} hits`);
        // Every caller got a 200: per exchange, the failing endpoint answered nothing.
        assert.equal(metricValue(text, 'meshd_requests_total', { service: 'users', endpoint: bad.address }), 0);
        assert.equal(metricValue(text, 'meshd_requests_total', { service: 'users', endpoint: good.address, code_class: '2xx' }), 20);
      } finally {
        await meshd.stop();
        await good.close();
        await bad.close();
      }
    });
  }
});

describe('scrape listener', () => {
  /** curl from `source`: the status code, or curl's exit code when the connection was refused. */
  const curl = async (source: string, url: string, ...args: string[]): Promise<{ status: string; body: string }> => {
    try {
      const { stdout } = await run('curl', ['-s', '--max-time', '5', '--interface', source, '-w', '\n%{http_code}', ...args, url]);
      const at = stdout.lastIndexOf('\n');
      return { status: stdout.slice(at + 1), body: stdout.slice(0, at) };
    } catch (err) {
      return { status: `curl exit ${String((err as { code?: unknown }).code)}`, body: '' };
    }
  };
  const config = (allowFrom: string): string => `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
metrics: { listen: 127.0.0.1:0, allowFrom: [ ${allowFrom} ] }
services:
  users: { endpoints: [ { address: BACKEND } ] }
`;

  it('serves /metrics and nothing else, to its allowFrom sources only, following reloads', async () => {
    const backend = await startBackend();
    const meshd = await startDaemon(config('"127.0.0.2/32"').replace('BACKEND', backend.address));
    try {
      const address = (await meshd.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'metrics'))['address'] as string;
      assert.equal((await request(meshd.outbound, { headers: { host: 'users' } })).status, 200);
      const scraped = await curl('127.0.0.2', `http://${address}/metrics`);
      assert.equal(scraped.status, '200');
      assert.ok(metricValue(scraped.body, 'meshd_requests_total', { service: 'users', code_class: '2xx' }) >= 1, scraped.body.slice(0, 500));
      const { code, out } = await promtoolCheck(`${scraped.body}\n`);
      assert.equal(code, 0, out);
      // None of the admin API: no state, no map, no dashboard, no changes, whatever the method.
      for (const path of ['/', '/debug/state', '/debug/graph', '/readyz', '/faults', '/canary/users/promote']) {
        assert.equal((await curl('127.0.0.2', `http://${address}${path}`)).status, '404', path);
      }
      const post = await curl('127.0.0.2', `http://${address}/faults`, '-X', 'POST', '-H', 'content-type: application/json', '-d', '{}');
      assert.equal(post.status, '404');
      assert.equal((await curl('127.0.0.2', `http://${address}/metrics`, '-X', 'DELETE')).status, '405');
      // A name a web page chose (DNS rebinding) is refused as on the admin listener.
      assert.equal((await curl('127.0.0.2', `http://${address}/metrics`, '-H', 'Host: evil.example')).status, '403');
      // Outside allowFrom: closed before a byte is read, counted.
      assert.match((await curl('127.0.0.1', `http://${address}/metrics`)).status, /^curl exit/);
      await meshd.waitForLog((l) => l.msg === 'connection from a source outside metrics.allowFrom refused' && l['remote'] === '127.0.0.1');
      const admin = (await request(meshd.admin, { path: '/metrics' })).body;
      assert.ok(metricValue(admin, 'meshd_connections_refused_total', { listener: 'metrics_source' }) >= 1);

      // A reload moves the list at once; taking the list out keeps the running one (never wider).
      const from = meshd.logs.length;
      meshd.writeConfig(config('"127.0.0.1/32"').replace('BACKEND', backend.address));
      meshd.signal('SIGHUP');
      await meshd.waitForLog((l) => l.msg === 'config reloaded', 10_000, from);
      assert.equal((await curl('127.0.0.1', `http://${address}/metrics`)).status, '200');
      assert.match((await curl('127.0.0.2', `http://${address}/metrics`)).status, /^curl exit/);
      const again = meshd.logs.length;
      meshd.writeConfig(
        config('"127.0.0.1/32"')
          .replace('BACKEND', backend.address)
          .replace(/, allowFrom: \[[^\]]*\]/, ''),
      );
      meshd.signal('SIGHUP');
      await meshd.waitForLog((l) => l.msg === 'config reloaded', 10_000, again);
      assert.match((await curl('127.0.0.2', `http://${address}/metrics`)).status, /^curl exit/);
      assert.equal((await curl('127.0.0.1', `http://${address}/metrics`)).status, '200');
    } finally {
      await meshd.stop();
      await backend.close();
    }
  });
});
