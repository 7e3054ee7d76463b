/**
 * The dashboard at the admin listener's `/`, in a real headless Chromium
 * (Debian's, driven by playwright-core) against a real meshd and real
 * backends: a backend that answers 500s is shown ejected with the detector's
 * reason while the healthy one is shown active, a label holding markup stays
 * text, the page runs under its own CSP without a console error or a failed
 * request (a 404 from a meshd without /debug/graph excepted), and the
 * screenshot the README shows is saved.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { echo, startBackend, startRawBackend, type Backend } from '../helpers/backend.ts';
import { tcpRoundTrip } from '../helpers/tcp.ts';
import { startDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { request, sleep } from '../helpers/http.ts';

const CHROMIUM = [process.env['CHROMIUM_PATH'], '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p !== undefined && p !== '' && existsSync(p));
const SCREENSHOT = fileURLToPath(new URL('../../docs/images/dashboard.png', import.meta.url));
/** How long the page may take to show what meshd decided (it polls every second). */
const SHOWN_WITHIN_MS = 10_000;
const MARKUP_LABEL = '<img src=x>';

/** Requests to `service` one after another until `stop()` (a steady trickle, as a live page sees). */
function traffic(meshd: RunningDaemon, service: string, gapMs: number): { stop(): Promise<void> } {
  const stopped = new AbortController();
  const done = (async () => {
    while (!stopped.signal.aborted) {
      await request(meshd.outbound, { headers: { host: service } }).catch(() => undefined);
      await sleep(gapMs);
    }
  })();
  return {
    stop: async () => {
      stopped.abort();
      await done;
    },
  };
}

describe('dashboard', () => {
  it(
    'shows the failing endpoint ejected with its reason and the healthy one active, in headless Chromium',
    { skip: CHROMIUM === undefined ? 'no Chromium binary (/usr/bin/chromium: apt-get install chromium, or set CHROMIUM_PATH)' : false, timeout: 90_000 },
    async (t) => {
      const good = await startBackend((_req, res) => res.end('ok'));
      const bad = await startBackend((_req, res) => {
        res.statusCode = 500;
        res.end('broken');
      });
      const v1 = await startBackend(echo);
      const v2 = await startBackend(echo);
      const store = await startRawBackend((socket) => socket.pipe(socket));
      const backends: Backend[] = [good, bad, v1, v2, store];
      const meshd = await startDaemon(`
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  api:
    endpoints:
      - { address: ${good.address}, zone: a, labels: { team: "${MARKUP_LABEL}" } }
      - { address: ${bad.address}, zone: b }
    balancer: { algorithm: round-robin }
    retries: { attempts: 1 }
    concurrency: { adaptive: true }
    outlier: { consecutiveServerErrors: 3, baseEjection: 30s }
  users:
    endpoints:
      - { address: ${v1.address}, labels: { version: v1 } }
      - { address: ${v2.address}, labels: { version: v2 } }
    outlier: { enabled: false }
    canary: { stable: { version: v1 }, canary: { version: v2 }, steps: [ 10, 50, 100 ], dwell: 60s, minRequests: 1000 }
  store:
    endpoints: [ { address: ${store.address} } ]
    tcp: { listen: 127.0.0.1:0 }
`);
      let browser: Browser | undefined;
      const loads: { stop(): Promise<void> }[] = [];
      try {
        await meshd.waitForLog((l) => l.msg === 'meshd ready', 20_000);
        browser = await chromium.launch({ executablePath: CHROMIUM!, args: ['--no-sandbox'] });
        const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
        const consoleErrors: string[] = [];
        const failed: string[] = [];
        const graphMissing: string[] = [];
        page.on('console', (m) => {
          if (m.type() !== 'error') return;
          // Chromium reports every 4xx fetch on the console; a meshd without /debug/graph answers 404.
          if (m.location().url.endsWith('/debug/graph') && m.text().includes('404')) return;
          consoleErrors.push(`${m.text()} (${m.location().url})`);
        });
        page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));
        page.on('requestfailed', (r) => failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText ?? 'failed'}`));
        page.on('response', (r) => {
          if (r.status() < 400) return;
          if (r.status() === 404 && new URL(r.url()).pathname === '/debug/graph') graphMissing.push(r.url());
          else failed.push(`${r.request().method()} ${r.url()}: ${r.status()}`);
        });

        const response = await page.goto(`http://${meshd.admin}/`);
        assert.ok(response !== null);
        assert.equal(response.status(), 200);
        const headers = response.headers();
        assert.equal(headers['content-type'], 'text/html; charset=utf-8');
        assert.equal(headers['cache-control'], 'no-store');
        const csp = headers['content-security-policy'] ?? '';
        assert.match(csp, /default-src 'none'/);
        assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/]+=*'(;|$)/);
        assert.match(csp, /connect-src 'self'/);
        assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);

        const row = (service: string, address: string): string => `[data-service="${service}"] tr[data-endpoint="${address}"]`;
        // Both endpoints shown active before any traffic.
        await page.waitForSelector(`${row('api', good.address)}[data-state="active"]`, { timeout: SHOWN_WITHIN_MS });
        await page.waitForSelector(`${row('api', bad.address)}[data-state="active"]`, { timeout: SHOWN_WITHIN_MS });

        const from = meshd.logs.length;
        loads.push(traffic(meshd, 'api', 20), traffic(meshd, 'users', 20));
        const eject = await meshd.waitForLog((l) => l['event'] === 'eject', 10_000, from);
        assert.equal(eject['endpoint'], bad.address);
        assert.equal(eject['reason'], 'consecutive_server_errors');

        // The ejected endpoint, its state and reason, as the page shows them.
        await page.waitForSelector(`${row('api', bad.address)}[data-state="ejected"]`, { timeout: SHOWN_WITHIN_MS });
        assert.equal((await page.textContent(`${row('api', bad.address)} [data-field="state"]`))?.trim(), 'ejected');
        assert.match((await page.textContent(`${row('api', bad.address)} [data-field="reason"]`)) ?? '', /consecutive_server_errors/);
        // The healthy one stays active and, with the other ejected, takes all the traffic.
        assert.equal(await page.getAttribute(row('api', good.address), 'data-state'), 'active');
        assert.equal((await page.textContent(`${row('api', good.address)} [data-field="state"]`))?.trim(), 'active');
        await page.waitForSelector(`${row('api', good.address)} [data-field="share"]:has-text("100 %")`, { timeout: SHOWN_WITHIN_MS });
        // The timeline has the ejection (from meshd's decision log, or seen between polls) and the map marks the endpoint.
        await page.waitForSelector(`#timeline li[data-decision="eject"][data-endpoint="${bad.address}"]`, { timeout: SHOWN_WITHIN_MS });
        await page.waitForSelector(`#graph svg [data-node="endpoint:api/${bad.address}"][data-state="ejected"]`, { timeout: SHOWN_WITHIN_MS });
        await page.waitForSelector(`#graph svg [data-node="endpoint:api/${good.address}"]`, { timeout: SHOWN_WITHIN_MS });
        // The canary and the concurrency limit.
        await page.waitForSelector('[data-service="users"] .canary[data-phase="progressing"]', { timeout: SHOWN_WITHIN_MS });
        assert.match((await page.textContent('[data-service="users"] .canary')) ?? '', /weight 10 %/);
        assert.match((await page.textContent('[data-service="api"]')) ?? '', /concurrency limit \d+/);
        // A TCP connection is an edge of the map that says what it carried.
        const tcpAt = (await meshd.waitForLog((l) => l.msg === 'listening' && l['listener'] === 'tcp'))['address'] as string;
        assert.equal(await tcpRoundTrip(tcpAt, 'ping'), 'ping');
        await page.waitForSelector('#graph svg text.el:has-text("tcp ·")', { timeout: SHOWN_WITHIN_MS });
        // A label holding markup is shown as text, never parsed.
        assert.ok(((await page.textContent(row('api', good.address))) ?? '').includes(`team=${MARKUP_LABEL}`));
        assert.equal(await page.locator(`${row('api', good.address)} img`).count(), 0);

        // A few more polls, so that the screenshot shows steady shares and rates.
        await sleep(2_500);
        mkdirSync(dirname(SCREENSHOT), { recursive: true });
        await page.screenshot({ path: SCREENSHOT, fullPage: true });
        t.diagnostic(`screenshot saved to ${SCREENSHOT}; /debug/graph ${graphMissing.length > 0 ? 'absent (404): graph drawn from /debug/state' : 'served'}`);

        assert.deepEqual(consoleErrors, [], 'no console errors');
        assert.deepEqual(failed, [], 'no failed requests');
      } finally {
        await Promise.all(loads.map((l) => l.stop()));
        await browser?.close();
        await meshd.stop();
        await Promise.all(backends.map((b) => b.close()));
      }
    },
  );
});
