import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { portProtocol } from '../../../src/discovery/kubernetes-slices.ts';
import { MeshError } from '../../../src/errors.ts';
import { parseServiceLabel, resolveServiceName } from '../../../src/kubernetes/service-names.ts';
import { MeshPolicies } from '../../../src/service/mesh-policy.ts';
import { normaliseConfig } from '../../../src/config/normalise.ts';

describe('Service names in mesh mode', () => {
  it('resolves every form cluster DNS accepts, a short name in the caller’s namespace', () => {
    for (const [host, caller, want] of [
      ['users', 'shop', 'users.shop'],
      ['users.shop', undefined, 'users.shop'],
      ['users.shop.svc', 'other', 'users.shop'],
      ['users.shop.svc.cluster.local', undefined, 'users.shop'],
    ] as const) {
      const ref = resolveServiceName(host, caller, 'cluster.local');
      assert.ok(!(ref instanceof MeshError), host);
      assert.equal(`${ref.name}.${ref.namespace}`, want, host);
    }
  });

  it('refuses what names no Service: a short name from an unknown caller, too many labels, invalid names', () => {
    for (const [host, caller] of [
      ['users', undefined],
      ['a.b.c', 'shop'],
      ['users.shop.svc.other.domain', 'shop'],
      ['1users', 'shop'],
      ['users.-shop', 'shop'],
    ] as const) {
      const ref = resolveServiceName(host, caller, 'cluster.local');
      assert.ok(ref instanceof MeshError, host);
      assert.equal(ref.code, 'unknown_service');
    }
    assert.deepEqual(parseServiceLabel('users.shop'), { name: 'users', namespace: 'shop' });
    assert.equal(parseServiceLabel('users'), undefined);
    assert.equal(parseServiceLabel('users.shop.x'), undefined);
  });

  it('reads a port’s HTTP version from its appProtocol, else its name', () => {
    assert.equal(portProtocol({ appProtocol: 'kubernetes.io/h2c' }), 'h2c');
    assert.equal(portProtocol({ appProtocol: 'grpc', name: 'http' }), 'h2c');
    assert.equal(portProtocol({ appProtocol: 'http', name: 'grpc' }), 'http1');
    assert.equal(portProtocol({ name: 'grpc-api' }), 'h2c');
    assert.equal(portProtocol({ name: 'http' }), 'http1');
    assert.equal(portProtocol({ name: 'metrics' }), undefined);
    assert.equal(portProtocol(undefined), undefined);
  });
});

describe('mesh authorization', () => {
  const mesh = normaliseConfig(
    {
      kubernetes: {
        mesh: { authorization: { 'users.shop': { allow: ['spiffe://cluster.local/ns/shop/sa/*'], deny: ['spiffe://cluster.local/ns/shop/sa/batch'] } } },
      },
    },
    't.yaml',
    '/',
  ).kubernetes.mesh!;

  it('judges the calling pod’s identity per Service; deny wins; an unknown caller fails an allow list', () => {
    const policies = new MeshPolicies();
    assert.equal(policies.verdict(mesh, 'users.shop', 'spiffe://cluster.local/ns/shop/sa/frontend').allowed, true);
    assert.equal(policies.verdict(mesh, 'users.shop', 'spiffe://cluster.local/ns/shop/sa/batch').allowed, false);
    assert.equal(policies.verdict(mesh, 'users.shop', 'spiffe://cluster.local/ns/other/sa/frontend').allowed, false);
    assert.equal(policies.verdict(mesh, 'users.shop', undefined).allowed, false);
    // A Service with no policy admits every caller, known or not.
    assert.equal(policies.verdict(mesh, 'cache.shop', undefined).allowed, true);
  });
});
