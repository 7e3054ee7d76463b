/**
 * A calling pod's load for the multi-node tests, run inside the pod's
 * network namespace: CONCURRENCY keep-alive callers send GETs to its node's
 * meshd naming SERVICE for DURATION_MS (bounded), (or until SIGTERM; "started" is printed once it may be sent), then one JSON line: how
 * many answers of each status, which pods answered, and the errors.
 * Usage: pod-load.ts MESHD_HOST:PORT SERVICE DURATION_MS CONCURRENCY [PATH]
 */
import { Agent, request } from 'node:http';

const [target = '127.0.0.1:4140', service = 'users', durationText = '1000', concurrencyText = '4', path = '/load'] = process.argv.slice(2);
const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
let until = Date.now() + Math.min(Number(durationText), 60_000);
// SIGTERM ends the load early: the callers finish their requests and the report is printed.
process.on('SIGTERM', () => (until = 0));
process.stdout.write('started\n');
const agent = new Agent({ keepAlive: true, maxSockets: Number(concurrencyText) });
const statuses: Record<string, number> = {};
const pods: Record<string, number> = {};
const errors: string[] = [];
let total = 0;

function once(): Promise<void> {
  return new Promise((resolve) => {
    const req = request({ host, port, path, agent, headers: { host: service }, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        total++;
        statuses[String(res.statusCode)] = (statuses[String(res.statusCode)] ?? 0) + 1;
        if (res.statusCode === 200) {
          const pod = (JSON.parse(body) as { pod: string }).pod;
          pods[pod] = (pods[pod] ?? 0) + 1;
        } else if (errors.length < 10) errors.push(`${res.statusCode}: ${body.slice(0, 200)}`);
        resolve();
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => {
      total++;
      statuses['error'] = (statuses['error'] ?? 0) + 1;
      if (errors.length < 10) errors.push(err.message);
      resolve();
    });
    req.end();
  });
}

async function caller(): Promise<void> {
  while (Date.now() < until) await once();
}

await Promise.all(Array.from({ length: Math.min(Number(concurrencyText), 64) }, caller));
agent.destroy();
process.stdout.write(`${JSON.stringify({ total, statuses, pods, errors })}\n`);
