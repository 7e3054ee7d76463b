import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAdminFault } from '../../../src/admin/changes.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { ConfigError } from '../../../src/errors.ts';

/** Every problem the loader reports for `yaml`, as "path: message". */
function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, 't.yaml', '/etc/meshd');
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.map((p) => `${p.path}: ${p.message}`);
  }
}

const svc = (traffic: string): string => `
services:
  users:
    endpoints: [ { address: 127.0.0.1:81, labels: { version: v1 } }, { address: 127.0.0.1:82, labels: { version: v2 } } ]
${traffic
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
`;

describe('traffic policy config', () => {
  it('accepts a policy that uses every part', () => {
    assert.deepEqual(
      problems(
        svc(`routes:
  - name: pinned
    matches: [ { headers: [ { name: x-canary, value: "1" } ], callers: [ "spiffe://prod/ns/web/**" ] } ]
    backendRefs: [ { subset: { version: v2 } } ]
    filters:
      - { type: RequestHeaderModifier, requestHeaderModifier: { set: [ { name: x-a, value: b } ], remove: [ x-c ] } }
      - { type: RequestMirror, requestMirror: { backendRef: { subset: { version: v2 } }, percent: 10 } }
    timeouts: { request: 2s, backendRequest: 500ms }
    retry: { attempts: 2, codes: [ 503 ], backoff: 50ms }
    rateLimit: { requestsPerSecond: 50, per: caller }
  - matches: [ { path: { type: RegularExpression, value: "/u/[0-9]+" }, queryParams: [ { name: q, value: x } ] } ]
  - name: moved
    matches: [ { path: { value: /old } }, { path: { type: PathPrefix, value: /older } } ]
    filters: [ { type: RequestRedirect, requestRedirect: { scheme: https, hostname: users.example, port: 8443, statusCode: 308, path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } } } ]
  - name: rewritten
    matches: [ { path: { type: Exact, value: /v1 } } ]
    filters: [ { type: URLRewrite, urlRewrite: { hostname: users.internal, path: { type: ReplaceFullPath, replaceFullPath: /v2 } } } ]
access: [ { action: deny, methods: [ DELETE ], paths: [ /admin/* ] } ]
rateLimit: { requestsPerSecond: 1000, burst: 2000 }
faults: [ { name: slow, match: { subset: { version: v2 }, route: pinned }, delay: { duration: 100ms, percent: 5 }, duration: 10m } ]
canary: { stable: { version: v1 }, canary: { version: v2 }, steps: [ 5, 25, 100 ], dwell: 30s }`),
      ),
      [],
    );
  });

  const cases: [string, string, string[]][] = [
    [
      'bad regular expressions',
      `routes: [ { matches: [ { path: { type: RegularExpression, value: "/(" }, headers: [ { type: RegularExpression, name: x, value: "[" } ] } ] } ]`,
      ['services.users.routes[0].matches[0].path.value', 'services.users.routes[0].matches[0].headers[0].value'],
    ],
    [
      "header modifiers touching meshd's and the protocol's fields",
      `routes: [ { filters: [ { type: RequestHeaderModifier, requestHeaderModifier: { set: [ { name: Host, value: x } ], add: [ { name: x-meshd-peer-identity, value: y } ], remove: [ transfer-encoding ] } } ] } ]`,
      [
        'services.users.routes[0].filters.requestHeaderModifier.set[0].name',
        'services.users.routes[0].filters.requestHeaderModifier.add[0].name',
        'services.users.routes[0].filters.requestHeaderModifier.remove[0]',
      ],
    ],
    [
      'a filter whose key does not match its type',
      `routes: [ { filters: [ { type: RequestMirror, requestHeaderModifier: { remove: [ x ] } } ] } ]`,
      ['services.users.routes[0].filters[0]'],
    ],
    [
      'RequestRedirect with backends, a mirror or URLRewrite',
      `routes: [ { backendRefs: [ { subset: { version: v1 } } ], filters: [ { type: RequestRedirect, requestRedirect: {} }, { type: URLRewrite, urlRewrite: { hostname: a } }, { type: RequestMirror, requestMirror: { backendRef: { subset: { version: v2 } } } } ] } ]`,
      ['services.users.routes[0].filters', 'services.users.routes[0].backendRefs', 'services.users.routes[0].filters'],
    ],
    [
      'ReplacePrefixMatch beside a match that is not a PathPrefix',
      `routes: [ { matches: [ { path: { value: /a } }, { path: { type: Exact, value: /b } } ], filters: [ { type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /c } } } ] } ]`,
      ['services.users.routes[0].matches'],
    ],
    [
      'a path modifier without its value, or with the other one',
      `routes: [ { filters: [ { type: URLRewrite, urlRewrite: { path: { type: ReplaceFullPath, replacePrefixMatch: /x } } } ] }, { filters: [ { type: RequestRedirect, requestRedirect: { path: { type: ReplacePrefixMatch } } } ] } ]`,
      [
        'services.users.routes[0].filters[0].urlRewrite.path.replaceFullPath',
        'services.users.routes[0].filters[0].urlRewrite.path.replacePrefixMatch',
        'services.users.routes[1].filters[0].requestRedirect.path.replacePrefixMatch',
      ],
    ],
    [
      'a redirect status, hostname or path Gateway API does not allow',
      `routes: [ { filters: [ { type: RequestRedirect, requestRedirect: { statusCode: 200, hostname: "*.example", path: { type: ReplaceFullPath, replaceFullPath: "/a?b" } } } ] } ]`,
      [
        'services.users.routes[0].filters[0].requestRedirect.hostname',
        'services.users.routes[0].filters[0].requestRedirect.path.replaceFullPath',
        'services.users.routes[0].filters[0].requestRedirect.statusCode',
      ],
    ],
    [
      'patterns that need backreferences or lookaround (no linear-time engine runs them)',
      `routes: [ { matches: [ { path: { type: RegularExpression, value: "/(a)\\\\1" }, headers: [ { type: RegularExpression, name: x, value: "(?=a)a" } ] } ] } ]`,
      ['services.users.routes[0].matches[0].path.value', 'services.users.routes[0].matches[0].headers[0].value'],
    ],
    ['duplicate route names', `routes: [ { name: a }, { name: a } ]`, ['services.users.routes[1].name']],
    ['all backend weights zero', `routes: [ { backendRefs: [ { subset: { version: v1 }, weight: 0 } ] } ]`, ['services.users.routes[0].backendRefs']],
    ['backendRequest over request', `routes: [ { timeouts: { request: 1s, backendRequest: 2s } } ]`, ['services.users.routes[0].timeouts.backendRequest']],
    [
      'a fault that does nothing, and one naming an unknown route',
      `faults: [ { name: f, duration: 1m }, { name: g, match: { route: nope }, abort: { status: 503, reset: true }, duration: 1m } ]`,
      ['services.users.faults[0]', 'services.users.faults[1].abort', 'services.users.faults[1].match.route'],
    ],
    ['a fault that never expires', `faults: [ { name: f, abort: { status: 503 }, duration: 0s } ]`, ['services.users.faults[0].duration']],
    [
      'a canary that never reaches 100 %, or descends',
      `canary: { stable: { version: v1 }, canary: { version: v2 }, steps: [ 50, 25 ] }`,
      ['services.users.canary.steps', 'services.users.canary.steps'],
    ],
    ['a canary of the stable subset', `canary: { stable: { version: v1 }, canary: { version: v1 } }`, ['services.users.canary.canary']],
    ['an access path with "*" inside', `access: [ { action: allow, paths: [ "/a/*/b" ] } ]`, ['services.users.access[0].paths[0]']],
    ['a bad caller pattern', `access: [ { action: deny, callers: [ "spiffe://a/**/b" ] } ]`, ['services.users.access[0].callers[0]']],
  ];
  for (const [what, traffic, paths] of cases) {
    it(`refuses ${what}`, () => {
      assert.deepEqual(
        problems(svc(traffic)).map((p) => p.slice(0, p.indexOf(': '))),
        paths,
      );
    });
  }

  it('a canary runs with several workers (the supervisor decides for them)', () => {
    assert.deepEqual(problems(`workers: 2\n${svc('canary: { stable: { version: v1 }, canary: { version: v2 } }')}`), []);
  });
});

describe('admin fault input', () => {
  it('accepts a valid fault and names every problem of a bad one', () => {
    const ok = parseAdminFault({ service: 'users', name: 'f', abort: { status: 503, percent: 10 }, duration: '5m' });
    assert.ok('fault' in ok && ok.fault.abort?.percent === 10 && ok.fault.durationMs === 300_000);
    const bad = parseAdminFault({ service: 'users', name: 'F!', delay: { duration: 'x' }, duration: '5m', extra: 1 });
    assert.ok('problems' in bad && bad.problems.length >= 3, JSON.stringify(bad));
    const long = parseAdminFault({ service: 'users', name: 'f', abort: { status: 503 }, duration: '48h' });
    assert.deepEqual('problems' in long ? long.problems : [], ['duration: at most 24h through the admin API']);
    assert.ok('problems' in parseAdminFault('nope'));
    assert.ok('problems' in parseAdminFault({ name: 'f', abort: { status: 503 }, duration: '1m' }), 'service required');
  });
});
