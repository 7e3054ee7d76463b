/**
 * The /metrics exposition passes promtool's lint (`promtool check metrics`),
 * from a single process and from the supervisor of several workers, with
 * traffic so that every per-service and per-endpoint family is present.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { startBackend } from '../helpers/backend.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { request } from '../helpers/http.ts';

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
        const { code, out } = await promtoolCheck(body);
        assert.equal(out.trim(), '', out);
        assert.equal(code, 0);
      } finally {
        await meshd.stop();
        await backend.close();
      }
    });
  }
});
