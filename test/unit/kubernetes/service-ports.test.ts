import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MeshError } from '../../../src/errors.ts';
import { chooseServicePort, defaultServicePort, type ServiceObject, type ServicePortObject } from '../../../src/kubernetes/service-ports.ts';

const service = (ports: readonly ServicePortObject[]): ServiceObject => ({ metadata: { name: 'users', namespace: 'shop' }, spec: { ports } });
const multi = service([
  { name: 'metrics', port: 9100, targetPort: 9100 },
  { name: 'dns', port: 53, protocol: 'UDP' },
  { name: 'http', port: 80, targetPort: 8080 },
  { name: 'admin', port: 9090, targetPort: 'admin' },
]);

describe('Service ports (mesh mode)', () => {
  it('maps a Service port to its name, and knows which one a call without a port takes', () => {
    assert.deepEqual(chooseServicePort(multi, 'users.shop', 9090, undefined), { port: 9090, name: 'admin', isDefault: false });
    assert.deepEqual(chooseServicePort(multi, 'users.shop', 80, undefined), { port: 80, name: 'http', isDefault: true });
    assert.equal(defaultServicePort(multi.spec?.ports ?? [])?.name, 'http');
    // No preferred name: the first TCP port.
    assert.equal(
      defaultServicePort([
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'a', port: 1 },
        { name: 'b', port: 2 },
      ])?.name,
      'a',
    );
  });

  it('a single-port Service needs no name: its slices carry one port', () => {
    assert.deepEqual(chooseServicePort(service([{ port: 8080, targetPort: 80 }]), 'users.shop', 8080, undefined), {
      port: 8080,
      name: undefined,
      isDefault: true,
    });
  });

  it('refuses a port the Service does not have (UDP ones included), naming the ones it has', () => {
    for (const port of [8080, 53]) {
      const err = chooseServicePort(multi, 'users.shop', port, undefined);
      assert.ok(err instanceof MeshError);
      assert.equal(err.code, 'unknown_service');
      assert.match(err.message, /has no TCP port \d+; its ports: 9100 \(metrics\), 80 \(http\), 9090 \(admin\)$/);
    }
  });

  it('says whether the Service is unknown or its ports cannot be read yet', () => {
    const unknown = chooseServicePort(undefined, 'users.shop', 9090, undefined);
    assert.ok(unknown instanceof MeshError);
    assert.equal(unknown.code, 'unknown_service');
    const unread = chooseServicePort(undefined, 'users.shop', 9090, 'services is forbidden');
    assert.ok(unread instanceof MeshError);
    assert.equal(unread.code, 'no_endpoints');
    assert.equal(unread.retryAfterSeconds, 1);
    assert.match(unread.message, /cannot be read \(services is forbidden\); call it without a port/);
  });
});
