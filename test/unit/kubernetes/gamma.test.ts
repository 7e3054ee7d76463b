import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { attachesTo, serviceRoutes, type HttpRouteObject } from '../../../src/kubernetes/gamma.ts';

const route = (name: string, spec: NonNullable<HttpRouteObject['spec']>, namespace = 'shop', created = '2026-01-01T00:00:00Z'): HttpRouteObject => ({
  metadata: { name, namespace, creationTimestamp: created },
  spec,
});
const parent = { group: '', kind: 'Service', name: 'users' };

describe('GAMMA HTTPRoutes', () => {
  it('attaches producer routes whose parentRef is the Service', () => {
    assert.equal(attachesTo(route('a', { parentRefs: [parent] }), 'users', 'shop'), true);
    assert.equal(attachesTo(route('a', { parentRefs: [{ ...parent, name: 'other' }] }), 'users', 'shop'), false);
    assert.equal(attachesTo(route('a', { parentRefs: [{ ...parent, kind: 'Gateway', group: 'gateway.networking.k8s.io' }] }), 'users', 'shop'), false);
    // A parentRef with a port attaches to that Service port only; without the Service's ports known, to all.
    const onPort = route('a', { parentRefs: [{ ...parent, port: 9090 }] });
    assert.deepEqual(
      [attachesTo(onPort, 'users', 'shop', 9090), attachesTo(onPort, 'users', 'shop', 80), attachesTo(onPort, 'users', 'shop')],
      [true, false, true],
    );
    assert.equal(attachesTo(route('a', { parentRefs: [parent] }), 'users', 'shop', 80), true);
    // A consumer route (in another namespace) is not applied.
    assert.equal(attachesTo(route('a', { parentRefs: [{ ...parent, namespace: 'shop' }] }, 'web'), 'users', 'shop'), false);
  });

  it('translates rules into subsets by backend Service, ends with a 404 catch-all, and leaves out what it cannot apply', () => {
    const out = serviceRoutes(
      [
        route(
          'newer',
          { parentRefs: [parent], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/b' } }], backendRefs: [{ name: 'users' }] }] },
          'shop',
          '2026-02-01T00:00:00Z',
        ),
        route('older', {
          parentRefs: [parent],
          rules: [
            {
              name: 'split',
              backendRefs: [
                { name: 'users-v1', weight: 90 },
                { name: 'users-v2', weight: 10 },
              ],
              timeouts: { request: '1m30s' },
            },
            { name: 'nobackend', matches: [{ method: 'DELETE' }] },
            {
              name: 'moved',
              matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
              filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 301 } }],
            },
            { name: 'rewrite', filters: [{ type: 'URLRewrite' }], backendRefs: [{ name: 'users' }] },
            { name: 'cors', filters: [{ type: 'CORS' }], backendRefs: [{ name: 'users' }] },
            { name: 'elsewhere', backendRefs: [{ name: 'users', namespace: 'other' }] },
            { name: 'badregex', matches: [{ path: { type: 'RegularExpression', value: '(' } }], backendRefs: [{ name: 'users' }] },
            { name: 'unknownfield', matches: [{ path: { type: 'PathPrefix', value: '/x' }, extra: 1 }], backendRefs: [{ name: 'users' }] },
          ],
        }),
        route('unrelated', { parentRefs: [{ ...parent, name: 'orders' }], rules: [{ backendRefs: [{ name: 'orders' }] }] }),
      ],
      { service: 'users', namespace: 'shop' },
    );
    assert.ok(out !== undefined);
    assert.deepEqual(
      out.rules.map((r) => [r.name, r.answer, r.backendRefs.map((b) => [Object.keys(b.subset)[0], b.weight])]),
      [
        [
          'older/split',
          undefined,
          [
            ['service.meshd.io/users-v1', 90],
            ['service.meshd.io/users-v2', 10],
          ],
        ],
        ['older/nobackend', 'no_backend', []],
        // A redirect answers by itself: no backends is not a 500.
        ['older/moved', undefined, []],
        ['newer/rule-1', undefined, [['service.meshd.io/users', 1]]],
        ['no-match', 'no_route', []],
      ],
    );
    assert.equal(out.rules[0]?.timeoutMs, 90_000);
    assert.deepEqual(out.backends, [
      { service: 'users-v1', port: undefined },
      { service: 'users-v2', port: undefined },
    ]);
    assert.deepEqual(
      out.skipped.map((s) => s.slice(0, s.indexOf(':'))),
      ['older/rewrite', 'older/cors', 'older/elsewhere', 'older/badregex', 'older/unknownfield'],
    );
    assert.match(out.skipped[0] ?? '', /type URLRewrite takes exactly the key urlRewrite/);
    assert.match(out.skipped[1] ?? '', /filter CORS is not supported/);
    assert.deepEqual(out.rules[2]?.redirect, {
      scheme: undefined,
      hostname: undefined,
      path: { type: 'ReplacePrefixMatch', value: '/new' },
      port: undefined,
      statusCode: 301,
    });
  });

  it('reads backendRef ports: another port of a Service is a subset of its own, the routed port itself is the Service’s endpoints', () => {
    const ports: Record<string, Record<number, string | undefined>> = { users: { 80: undefined, 9100: 'admin' }, orders: { 80: undefined, 7000: 'grpc' } };
    const portNameOf = (service: string, port: number): { name: string | undefined } | string => {
      const known = ports[service] ?? {};
      return port in known ? { name: known[port] } : `no TCP port ${String(port)}`;
    };
    const spec = {
      parentRefs: [parent],
      rules: [
        { name: 'admin', backendRefs: [{ name: 'users', port: 9100 }] },
        { name: 'self', backendRefs: [{ name: 'users', port: 80 }] },
        { name: 'orders', backendRefs: [{ name: 'orders', port: 7000 }, { name: 'orders' }] },
        { name: 'wrong', backendRefs: [{ name: 'orders', port: 1 }] },
      ],
    };
    const out = serviceRoutes([route('r', spec)], { service: 'users', namespace: 'shop', servicePort: 80, portNameOf });
    assert.ok(out !== undefined);
    assert.deepEqual(
      out.rules.map((r) => [r.name, r.backendRefs.map((b) => Object.keys(b.subset)[0])]),
      [
        ['r/admin', ['service.meshd.io/users.admin']],
        ['r/self', ['service.meshd.io/users']],
        ['r/orders', ['service.meshd.io/orders.grpc', 'service.meshd.io/orders']],
        ['no-match', []],
      ],
    );
    assert.deepEqual(out.backends, [
      { service: 'orders', port: undefined },
      { service: 'orders', port: 'grpc' },
      { service: 'users', port: 'admin' },
    ]);
    assert.deepEqual(out.skipped, ['r/wrong: backendRef orders port 1: no TCP port 1']);
    // Routed on its port 9100, the Service's own subset is that port's endpoints (labelled with the port), and port 80 is a backend.
    const onAdmin = serviceRoutes(
      [
        route('r', {
          parentRefs: [parent],
          rules: [
            {
              backendRefs: [
                { name: 'users', port: 9100 },
                { name: 'users', port: 80 },
              ],
            },
          ],
        }),
      ],
      {
        service: 'users',
        namespace: 'shop',
        servicePort: 9100,
        portName: 'admin',
        portNameOf,
      },
    );
    assert.deepEqual(
      onAdmin?.rules[0]?.backendRefs.map((b) => Object.keys(b.subset)[0]),
      ['service.meshd.io/users.admin', 'service.meshd.io/users'],
    );
  });

  it('a Service without HTTPRoutes has no routes from the cluster', () => {
    assert.equal(serviceRoutes([], { service: 'users', namespace: 'shop' }), undefined);
  });
});
