/** Open-loop load for integration tests: requests at a fixed rate, bounded in count. */
import { Agent } from 'node:http';
import { request, sleep } from './http.ts';

export interface LoadResult {
  /** Port of the backend that answered (from its JSON body), -1 when meshd answered itself. */
  ports: number[];
  statuses: number[];
  /** When each request was sent, in ms from the start of the run. */
  sentAt: number[];
  /** Time each request took, in ms. */
  latencies: number[];
}

/** Sends `total` requests at `ratePerSecond` (open loop) and returns which backend answered each. */
export async function openLoop(address: string, host: string, ratePerSecond: number, total: number): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const ports: number[] = [];
  const statuses: number[] = [];
  const sentAt: number[] = [];
  const latencies: number[] = [];
  const inFlight: Promise<void>[] = [];
  const interval = 1000 / ratePerSecond;
  const start = Date.now();
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    const sent = performance.now();
    sentAt[i] = Date.now() - start;
    inFlight.push(
      request(address, { headers: { host }, agent }).then(
        (r) => {
          latencies[i] = performance.now() - sent;
          statuses[i] = r.status;
          ports[i] = r.headers['x-meshd-error'] === undefined && r.headers['content-type'] === 'application/json' ? (r.json() as { port: number }).port : -1;
        },
        () => {
          latencies[i] = performance.now() - sent;
          statuses[i] = 0;
          ports[i] = -1;
        },
      ),
    );
  }
  await Promise.all(inFlight);
  agent.destroy();
  return { ports, statuses, sentAt, latencies };
}
