/** Endpoints for balancer tests: no sockets, a settable eligibility, an injected clock. */
import { Endpoint, type Upstream } from '../../../src/balancer/endpoint.ts';
import { PeakEwma, DEFAULT_PEAK_EWMA, type PeakEwmaOptions } from '../../../src/balancer/peak-ewma.ts';
import type { EndpointSpec } from '../../../src/config/types.ts';

const upstream: Upstream = { close: async () => {} };
const recorder = { finished: () => {} };

export class TestEndpoint extends Endpoint {
  up = true;
  override get eligible(): boolean {
    return this.up;
  }
}

export function endpoint(address: string, opts: { weight?: number; zone?: string; now?: number; ewma?: PeakEwmaOptions } = {}): TestEndpoint {
  const spec: EndpointSpec = { address, host: '127.0.0.1', port: 1, zone: opts.zone, weight: opts.weight ?? 1, labels: {}, identity: undefined };
  const now = opts.now ?? 0;
  return new TestEndpoint(spec, upstream, recorder, now, undefined, new PeakEwma(opts.ewma ?? DEFAULT_PEAK_EWMA, now));
}

/** Counts picks per address. */
export function tally(pick: () => Endpoint | undefined, n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const e = pick();
    const key = e?.address ?? 'none';
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
