/**
 * The pure parts of discovery: a source's record (last good set, the empty
 * guard, counts by result) on an injected clock, and the reading of
 * EndpointSlices (readiness, ports by name or number, address types).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EndpointSpec } from '../../../src/config/types.ts';
import { endpointsOf, type SliceObject } from '../../../src/discovery/kubernetes-source.ts';
import { SourceRecord, type UpdateResult } from '../../../src/discovery/source-record.ts';

const spec = (address: string): EndpointSpec => {
  const [host, port] = address.split(':');
  return { address, host: host!, port: Number(port), zone: undefined, weight: 1, labels: {}, identity: undefined };
};

describe('source record', () => {
  it('keeps the last good set through failures and an empty answer until it has lasted acceptEmptyAfter', () => {
    let now = 1_000;
    const results: UpdateResult[] = [];
    const record = new SourceRecord(
      60_000,
      () => now,
      (r) => results.push(r),
    );
    assert.equal(record.offer([spec('10.0.0.1:80'), spec('10.0.0.2:80')]), true);
    assert.equal(record.offer([spec('10.0.0.2:80'), spec('10.0.0.1:80')]), false, 'the same set in another order is no change');
    record.fail('timeout');
    assert.equal(record.endpoints.length, 2);
    now += 10_000;
    assert.equal(record.offer([]), false, 'an empty answer is held');
    assert.equal(record.status().emptyHeldSince, new Date(11_000).toISOString());
    now += 59_999;
    assert.equal(record.offer([]), false);
    now += 1;
    assert.equal(record.offer([]), true, 'believed once it has lasted 60 s');
    assert.equal(record.endpoints.length, 0);
    assert.deepEqual(results, ['changed', 'unchanged', 'error', 'empty_held', 'empty_held', 'changed']);
  });

  it('forgets a held-back empty answer when endpoints come back, and reports its staleness', () => {
    let now = 0;
    const record = new SourceRecord(
      1_000,
      () => now,
      () => {},
    );
    assert.equal(record.staleSeconds(), undefined);
    record.offer([spec('10.0.0.1:80')]);
    now = 500;
    record.offer([]);
    now = 900;
    record.offer([spec('10.0.0.1:80')]);
    now = 1_400;
    assert.equal(record.offer([]), false, 'the empty clock started again');
    assert.equal(record.staleSeconds(), 0);
    now = 4_400;
    assert.equal(record.staleSeconds(), 3);
  });
});

describe('EndpointSlices', () => {
  const slice = (over: Partial<SliceObject>): SliceObject => ({
    addressType: 'IPv4',
    ports: [
      { name: 'http', port: 8080 },
      { name: 'grpc', port: 9090 },
    ],
    endpoints: [],
    ...over,
  });

  it('takes ready endpoints (unknown readiness counts as ready) at the port chosen by name or number', () => {
    const s = slice({
      endpoints: [
        { addresses: ['10.1.0.1'], conditions: { ready: true }, zone: 'z1', nodeName: 'n1', targetRef: { kind: 'Pod', name: 'p1', namespace: 'shop' } },
        { addresses: ['10.1.0.2'] },
        { addresses: ['10.1.0.3'], conditions: { ready: false } },
      ],
    });
    assert.deepEqual(
      endpointsOf([s], 'grpc').map((e) => e.address),
      ['10.1.0.1:9090', '10.1.0.2:9090'],
    );
    assert.deepEqual(
      endpointsOf([s], 8080).map((e) => e.address),
      ['10.1.0.1:8080', '10.1.0.2:8080'],
    );
    assert.deepEqual(
      endpointsOf([s], undefined).map((e) => e.address),
      ['10.1.0.1:8080', '10.1.0.2:8080'],
      'no port named: the first',
    );
    assert.deepEqual(endpointsOf([s], 'metrics'), [], 'a slice without the port contributes nothing');
    const first = endpointsOf([s], 'http')[0]!;
    assert.equal(first.zone, 'z1');
    assert.deepEqual(first.labels, { node: 'n1', pod: 'p1', namespace: 'shop' });
  });

  it('reads IPv6 slices, skips FQDN ones, and merges an address listed by two slices', () => {
    const v6 = slice({ addressType: 'IPv6', endpoints: [{ addresses: ['fd00::5'] }] });
    const fqdn = slice({ addressType: 'FQDN', endpoints: [{ addresses: ['users.example.com'] }] });
    const dup = slice({ endpoints: [{ addresses: ['10.1.0.1'] }] });
    const again = slice({ endpoints: [{ addresses: ['10.1.0.1'] }] });
    assert.deepEqual(
      endpointsOf([v6, fqdn, dup, again], 'http').map((e) => e.address),
      ['[fd00::5]:8080', '10.1.0.1:8080'],
    );
  });
});
