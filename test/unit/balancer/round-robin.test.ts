import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Endpoint, type Upstream } from '../../../src/balancer/endpoint.ts';
import { RoundRobinBalancer } from '../../../src/balancer/round-robin.ts';
import type { EndpointSpec } from '../../../src/config/types.ts';

const upstream: Upstream = { close: async () => {} };
const recorder = { finished: () => {} };

function endpoint(address: string, eligible = true): Endpoint {
  const spec: EndpointSpec = { address, host: '127.0.0.1', port: 1, zone: undefined, weight: 1, labels: {}, identity: undefined };
  const e = new Endpoint(spec, upstream, recorder, 0);
  if (!eligible) Object.defineProperty(e, 'eligible', { get: () => false });
  return e;
}

function picks(balancer: RoundRobinBalancer, n: number): (string | undefined)[] {
  return Array.from({ length: n }, () => balancer.pick()?.address);
}

describe('round robin', () => {
  it('visits every endpoint in turn, from any start offset', () => {
    for (const start of [0, 1, 2, 1000]) {
      const rr = new RoundRobinBalancer(start);
      rr.setEndpoints([endpoint('a'), endpoint('b'), endpoint('c')]);
      const seq = picks(rr, 9);
      for (let i = 0; i < 9; i += 3) assert.deepEqual(new Set(seq.slice(i, i + 3)), new Set(['a', 'b', 'c']), `start ${start}: ${seq.join()}`);
      for (let i = 1; i < 9; i++) assert.notEqual(seq[i], seq[i - 1]);
    }
  });

  it('returns undefined with no endpoints or none eligible', () => {
    const rr = new RoundRobinBalancer();
    assert.equal(rr.pick(), undefined);
    rr.setEndpoints([endpoint('a', false), endpoint('b', false)]);
    assert.equal(rr.pick(), undefined);
  });

  it('skips ineligible endpoints and spreads evenly over the rest', () => {
    const rr = new RoundRobinBalancer();
    rr.setEndpoints([endpoint('a'), endpoint('b', false), endpoint('c')]);
    const seq = picks(rr, 100);
    assert.equal(seq.filter((s) => s === 'b').length, 0);
    const a = seq.filter((s) => s === 'a').length;
    assert.ok(Math.abs(a - 50) <= 1, `a got ${a} of 100`);
  });

  it('keeps working when the endpoint set shrinks under it', () => {
    const rr = new RoundRobinBalancer();
    rr.setEndpoints([endpoint('a'), endpoint('b'), endpoint('c'), endpoint('d')]);
    picks(rr, 3);
    rr.setEndpoints([endpoint('x')]);
    assert.deepEqual(picks(rr, 3), ['x', 'x', 'x']);
  });
});
