/**
 * `meshd demo`: the feedback loop, watched live. In one process it starts
 * three backends (one steady, one that turns 10× slow for a while, one that
 * fails 30 % for a while), a meshd on an embedded demo config, and a load
 * generator, then redraws a table every second: each endpoint's share of the
 * traffic, latency, success rate, state and the reason for it, with the
 * latest decisions below. Ctrl-C (or --duration) stops everything cleanly.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import { monotonicClock } from '../clock.ts';
import { parseConfig } from '../config/load.ts';
import { Daemon } from '../daemon.ts';

/** The scripted life of the demo backends, repeating every cycle. */
const CYCLE_MS = 90_000;
const SLOW_FROM = 10_000;
const SLOW_UNTIL = 40_000;
const FLAKY_FROM = 50_000;
const FLAKY_UNTIL = 70_000;
const RATE_PER_SECOND = 200;

interface DemoBackend {
  name: string;
  role: string;
  server: Server;
  port: number;
}

function phase(started: number): number {
  return (monotonicClock() - started) % CYCLE_MS;
}

async function startBackend(name: string, role: string, behave: (t: number) => { delayMs: number; fail: boolean }, started: number): Promise<DemoBackend> {
  const server = createServer((_req, res) => {
    const { delayMs, fail } = behave(phase(started));
    setTimeout(() => {
      res.writeHead(fail ? 500 : 200, { 'content-type': 'text/plain' });
      res.end(fail ? 'failure\n' : `hello from ${name}\n`);
    }, delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { name, role, server, port: (server.address() as AddressInfo).port };
}

interface EndpointRow {
  address: string;
  state: string;
  inFlight: number;
  stats: { ewmaLatencyMs?: number; windowSuccessRate?: number };
  health?: { lastReason?: string; returnInMs?: number; windowLatencyPercentileMs?: number };
}

export async function demoCommand(durationMs: number | undefined): Promise<number> {
  const started = monotonicClock();
  const backends = [
    await startBackend('steady', 'always healthy', () => ({ delayMs: 5, fail: false }), started),
    await startBackend(
      'slowpoke',
      `10x slow ${SLOW_FROM / 1000}-${SLOW_UNTIL / 1000}s`,
      (t) => ({ delayMs: t >= SLOW_FROM && t < SLOW_UNTIL ? 50 : 5, fail: false }),
      started,
    ),
    await startBackend(
      'flaky',
      `fails 30% ${FLAKY_FROM / 1000}-${FLAKY_UNTIL / 1000}s`,
      (t) => ({ delayMs: 5, fail: t >= FLAKY_FROM && t < FLAKY_UNTIL && Math.random() < 0.3 }),
      started,
    ),
  ];
  const byPort = new Map(backends.map((b) => [`127.0.0.1:${b.port}`, b]));
  const named = (text: string): string => text.replace(/127\.0\.0\.1:\d+/g, (address) => byPort.get(address)?.name ?? address);
  const config = parseConfig(
    `
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  demo:
    endpoints:
${backends.map((b) => `      - { address: 127.0.0.1:${b.port} }`).join('\n')}
    timeout: 2s
    # Round robin on purpose: P2C + EWMA would starve the bad hosts before the outlier rules
    # see enough traffic, and the newcomer would watch shares move without a single decision.
    balancer: { algorithm: round-robin }
    retries: { retryOn: [500, 502, 503, 504] }
    outlier: { baseEjection: 5s, returnRamp: 5s, probation: 5s }
    concurrency: { adaptive: true }
`,
    '<embedded demo config>',
    process.cwd(),
  );

  // Decisions are shown under the table instead of scrolling past as JSON.
  const decisions: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line === '') continue;
        try {
          const e = JSON.parse(line) as { event?: string; msg: string; time: string };
          if (e.event !== undefined && e.event !== 'limit_change') decisions.push(`${e.time.slice(11, 19)}  ${named(e.msg)}`);
        } catch {
          /* not JSON: ignore */
        }
      }
      if (decisions.length > 8) decisions.splice(0, decisions.length - 8);
      done();
    },
  });
  const log = pino({ level: 'info', timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, sink);
  const daemon = new Daemon(config, { log, clock: monotonicClock, random: Math.random });
  const { outbound, admin } = await daemon.start();

  // Open-loop load: a request every 5 ms, counted by the backend that answered.
  const agent = new Agent({ connections: 64 });
  const answered = new Map<string, number>();
  let ok = 0;
  let failed = 0;
  const load = setInterval(() => {
    void request(`http://${outbound}/`, { headers: { host: 'demo' }, dispatcher: agent }).then(
      async (res) => {
        const body = await res.body.text();
        const name = /hello from (\w+)/.exec(body)?.[1] ?? 'error';
        answered.set(name, (answered.get(name) ?? 0) + 1);
        if (res.statusCode === 200) ok++;
        else failed++;
      },
      () => failed++,
    );
  }, 1000 / RATE_PER_SECOND);

  const tty = process.stdout.isTTY;
  const draw = (): void => {
    const state = daemon.state() as { services: { endpoints: EndpointRow[]; concurrency?: { limit: number } }[] };
    const service = state.services[0];
    const total = [...answered.values()].reduce((a, b) => a + b, 0) || 1;
    const t = Math.floor(phase(started) / 1000);
    const lines = [
      `meshd demo — ${RATE_PER_SECOND} req/s through ${outbound} (admin http://${admin}/debug/state)   t=${t}s of ${CYCLE_MS / 1000}s   Ctrl-C to stop`,
      '',
      `${'endpoint'.padEnd(10)} ${'behaviour'.padEnd(22)} ${'share'.padStart(6)} ${'ewma'.padStart(8)} ${'p90'.padStart(8)} ${'success'.padStart(8)}  ${'state'.padEnd(10)} reason`,
    ];
    for (const e of service?.endpoints ?? []) {
      const b = byPort.get(e.address);
      const share = ((answered.get(b?.name ?? '') ?? 0) / total) * 100;
      const rate = e.stats.windowSuccessRate;
      const back = e.health?.returnInMs === undefined ? '' : ` (back in ${Math.ceil(e.health.returnInMs / 1000)}s)`;
      lines.push(
        `${(b?.name ?? e.address).padEnd(10)} ${(b?.role ?? '').padEnd(22)} ${share.toFixed(0).padStart(5)}% ${fmtMs(e.stats.ewmaLatencyMs)} ${fmtMs(e.health?.windowLatencyPercentileMs)} ${rate === undefined ? '       -' : `${(rate * 100).toFixed(1).padStart(7)}%`}  ${e.state.padEnd(10)} ${(e.health?.lastReason ?? '') + back}`,
      );
    }
    const callerRate = ok + failed === 0 ? 100 : (ok / (ok + failed)) * 100;
    lines.push(
      '',
      `callers: ${ok + failed} requests in the last second, ${callerRate.toFixed(2)}% succeeded (retries hide backend failures)   concurrency limit: ${service?.concurrency?.limit ?? '-'}`,
    );
    lines.push('', 'recent decisions:', ...(decisions.length === 0 ? ['  (none yet)'] : decisions.map((d) => `  ${d}`)));
    process.stdout.write(tty ? `\x1b[2J\x1b[H${lines.join('\n')}\n` : `${lines.join('\n')}\n\n`);
    answered.clear();
    ok = 0;
    failed = 0;
  };
  const screen = setInterval(draw, 1000);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (): Promise<void> => {
      if (stopping) return;
      stopping = true;
      clearInterval(load);
      clearInterval(screen);
      await daemon.drain(2_000);
      await agent.close();
      await Promise.all(
        backends.map(
          (b) =>
            new Promise<void>((r) => {
              b.server.closeAllConnections();
              b.server.close(() => r());
            }),
        ),
      );
      process.stdout.write('demo stopped\n');
      resolve(0);
    };
    process.once('SIGINT', () => void stop());
    process.once('SIGTERM', () => void stop());
    if (durationMs !== undefined) setTimeout(() => void stop(), durationMs);
  });
}

function fmtMs(ms: number | undefined): string {
  return ms === undefined ? '       -' : `${ms.toFixed(1).padStart(6)}ms`;
}
