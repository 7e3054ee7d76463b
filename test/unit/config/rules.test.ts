import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../../src/config/load.ts';
import { normaliseConfig } from '../../../src/config/normalise.ts';
import type { RawConfig } from '../../../src/config/raw.ts';
import * as rules from '../../../src/config/rules.ts';
import { CONFIG_SCHEMA } from '../../../src/config/schema.ts';
import { compileSchema, formatPath, parseYaml, schemaProblems } from '../../../src/config/validate.ts';
import { ConfigError } from '../../../src/errors.ts';

const validateConfig = compileSchema(CONFIG_SCHEMA);

/** The config as a rule sees it; fails the test if the schema would have rejected it first. */
function subjectOf(yaml: string): rules.ConfigUnderCheck {
  const parsed = parseYaml(yaml);
  assert.ok(!Array.isArray(parsed), `not YAML: ${yaml}`);
  const raw = (parsed.value ?? {}) as RawConfig;
  assert.deepEqual(schemaProblems(validateConfig, raw, parsed.locate), [], `schema rejects: ${yaml}`);
  return { raw, config: normaliseConfig(raw, 't.yaml', '/etc/meshd') };
}

function problemsOf(rule: rules.ConfigRule, yaml: string): [string, string][] {
  const problems: [string, string][] = [];
  rule(subjectOf(yaml), (path, message) => problems.push([formatPath(path), message]));
  return problems;
}

const service = (body: string): string => `services:\n  s: ${body}\n`;
const TLS = 'tls: { cert: c.pem, key: k.pem, ca: ca.pem }';

interface Case {
  rule: rules.ConfigRule;
  /** Breaks the rule; each problem as [path, message], in order. */
  bad: string;
  problems: [string, string][];
  /** The nearest config that keeps it. */
  good: string;
}

const perService = rules.forEachService;

const CASES: Record<string, Case> = {
  dnsAddressRecordsNeedPort: {
    rule: perService(rules.dnsAddressRecordsNeedPort),
    bad: service('{ discovery: { dns: { name: users.internal, type: A } } }'),
    problems: [['services.s.discovery.dns.port', "A records carry no port: set the endpoints' port"]],
    good: service('{ discovery: { dns: { name: users.internal, type: A, port: 8080 } } }'),
  },
  dnsTtlBoundsAreOrdered: {
    rule: perService(rules.dnsTtlBoundsAreOrdered),
    bad: service('{ discovery: { dns: { name: _http._tcp.users.internal, minTtl: 10m, maxTtl: 1m } } }'),
    problems: [['services.s.discovery.dns.minTtl', 'must not be greater than maxTtl']],
    good: service('{ discovery: { dns: { name: _http._tcp.users.internal, minTtl: 1s, maxTtl: 1m } } }'),
  },
  endpointAddressesAreDistinct: {
    rule: perService(rules.endpointAddressesAreDistinct),
    bad: service('{ endpoints: [ { address: 127.0.0.1:80 }, { address: 127.0.0.1:81 }, { address: 127.0.0.1:80 } ] }'),
    problems: [['services.s.endpoints[2].address', 'duplicate of services.s.endpoints[0] (127.0.0.1:80)']],
    good: service('{ endpoints: [ { address: 127.0.0.1:80 }, { address: 127.0.0.1:81 } ] }'),
  },
  ringHashNeedsHashOn: {
    rule: perService(rules.ringHashNeedsHashOn),
    bad: service('{ balancer: { algorithm: ring-hash } }'),
    problems: [['services.s.balancer.hashOn', 'ring-hash needs hashOn: { header: NAME } or { cookie: NAME }']],
    good: service('{ balancer: { algorithm: ring-hash, hashOn: { cookie: session } } }'),
  },
  hashOnNeedsRingHash: {
    rule: perService(rules.hashOnNeedsRingHash),
    bad: service('{ balancer: { hashOn: { header: x-user } } }'),
    problems: [['services.s.balancer.hashOn', 'only used by algorithm: ring-hash']],
    good: service('{ balancer: { algorithm: ring-hash, hashOn: { header: x-user } } }'),
  },
  balancerDecayIsPositive: {
    rule: perService(rules.balancerDecayIsPositive),
    bad: service('{ balancer: { decay: 0s } }'),
    problems: [['services.s.balancer.decay', 'must be greater than 0s']],
    good: service('{ balancer: { decay: 1ms } }'),
  },
  serviceTcpOffLoopbackNeedsAllowFrom: {
    rule: perService(rules.serviceTcpOffLoopbackNeedsAllowFrom),
    bad: service('{ tcp: { listen: "[::]:15432" } }'),
    problems: [['services.s.tcp.listen', "[::]:15432 is reachable from other hosts: set services.s.tcp.allowFrom to the callers' ranges"]],
    good: service('{ tcp: { listen: "[::]:15432", allowFrom: [ 10.244.1.0/24 ] } }'),
  },
  serviceTimeoutIsPositive: {
    rule: perService(rules.serviceTimeoutIsPositive),
    bad: service('{ timeout: 0s }'),
    problems: [['services.s.timeout', 'must be greater than 0s']],
    good: service('{ timeout: 1ms }'),
  },
  healthCheckHasOneKind: {
    rule: perService(rules.healthCheckHasOneKind),
    bad: `services:\n  both: { healthCheck: { http: { path: /healthz }, tcp: true } }\n  neither: { healthCheck: { interval: 1s } }\n`,
    problems: [
      ['services.both.healthCheck', 'set exactly one of http: { path: /… } or tcp: true'],
      ['services.neither.healthCheck', 'set exactly one of http: { path: /… } or tcp: true'],
    ],
    good: `services:\n  http: { healthCheck: { http: { path: /healthz }, tcp: false } }\n  tcp: { healthCheck: { tcp: true } }\n`,
  },
  healthCheckIntervalIsAtLeast100ms: {
    rule: perService(rules.healthCheckIntervalIsAtLeast100ms),
    bad: service('{ healthCheck: { tcp: true, interval: 99ms } }'),
    problems: [['services.s.healthCheck.interval', 'must be at least 100ms']],
    good: service('{ healthCheck: { tcp: true, interval: 100ms } }'),
  },
  healthCheckNeedsOutlier: {
    rule: perService(rules.healthCheckNeedsOutlier),
    bad: service('{ healthCheck: { tcp: true }, outlier: { enabled: false } }'),
    problems: [['services.s.healthCheck', 'health checks act through the outlier detector; do not disable outlier']],
    good: service('{ outlier: { enabled: false } }'),
  },
  concurrencyMinLimitIsWithinMax: {
    rule: perService(rules.concurrencyMinLimitIsWithinMax),
    bad: service('{ concurrency: { minLimit: 5, maxLimit: 4 } }'),
    problems: [['services.s.concurrency.minLimit', 'must not exceed maxLimit']],
    good: service('{ concurrency: { minLimit: 4, maxLimit: 4, initialLimit: 4 } }'),
  },
  concurrencyInitialLimitIsWithinBounds: {
    rule: perService(rules.concurrencyInitialLimitIsWithinBounds),
    bad: service('{ concurrency: { initialLimit: 3000 } }'),
    problems: [['services.s.concurrency.initialLimit', 'must lie between minLimit and maxLimit']],
    // Only a written initialLimit is held to the bounds, not the default one.
    good: service('{ concurrency: { minLimit: 300 } }'),
  },
  outlierWindowIsPositive: {
    rule: perService(rules.outlierWindowIsPositive),
    bad: service('{ outlier: { window: 0s } }'),
    problems: [['services.s.outlier.window', 'must be greater than 0s']],
    good: service('{ outlier: { window: 1s } }'),
  },
  retryBudgetWindowIsPositive: {
    rule: perService(rules.retryBudgetWindowIsPositive),
    bad: service('{ retries: { budget: { window: 0s } } }'),
    problems: [['services.s.retries.budget.window', 'must be greater than 0s']],
    good: service('{ retries: { budget: { window: 1s } } }'),
  },
  retryBackoffBaseIsWithinMax: {
    rule: perService(rules.retryBackoffBaseIsWithinMax),
    bad: service('{ retries: { backoff: { base: 1s } } }'),
    problems: [['services.s.retries.backoff.base', 'must not exceed backoff.max']],
    good: service('{ retries: { backoff: { base: 250ms } } }'),
  },
  serviceTcpPortZeroNeedsOneWorker: {
    rule: perService(rules.serviceTcpPortZeroNeedsOneWorker),
    bad: `workers: auto\n${service('{ tcp: { listen: 127.0.0.1:0 } }')}`,
    problems: [['services.s.tcp.listen', 'port 0 (any free port) cannot be shared by several workers: give a fixed port or set workers: 1']],
    good: `workers: 1\n${service('{ tcp: { listen: 127.0.0.1:0 } }')}`,
  },
  serviceTcpListenAddressIsFree: {
    rule: perService(rules.serviceTcpListenAddressIsFree),
    bad: `metrics: { listen: 127.0.0.1:9991 }
services:
  a: { tcp: { listen: 127.0.0.1:9990 } }
  b: { tcp: { listen: 127.0.0.1:7000 } }
  c: { tcp: { listen: 127.0.0.1:7000 } }
  d: { tcp: { listen: 127.0.0.1:7000 } }
  e: { tcp: { listen: 127.0.0.1:9991 } }
`,
    problems: [
      ['services.a.tcp.listen', 'same address as admin.listen (127.0.0.1:9990)'],
      ['services.c.tcp.listen', 'same address as services.b.tcp.listen (127.0.0.1:7000)'],
      ['services.d.tcp.listen', 'same address as services.c.tcp.listen (127.0.0.1:7000)'],
      ['services.e.tcp.listen', 'same address as metrics.listen (127.0.0.1:9991)'],
    ],
    // Port 0 is a fresh port for each listener, never a clash.
    good: `admin: { listen: 127.0.0.1:0 }\noutbound: { listen: 127.0.0.1:0 }\nservices:\n  a: { tcp: { listen: 127.0.0.1:0 } }\n  b: { tcp: { listen: 127.0.0.1:7000 } }\n`,
  },
  localIdentityPatternsAreValid: {
    rule: rules.localIdentityPatternsAreValid,
    bad: `inbound: {}\n${TLS}\nlocal:\n  web: { target: 127.0.0.1:8080, allow: [ "spiffe://p/ok/**" ], deny: [ "spiffe://p/a", "spiffe://p/**/x" ] }\n`,
    problems: [['local.web.deny[1]', '"**" may only stand alone as the last segment ("…/team/**"), got "spiffe://p/**/x"']],
    good: `inbound: {}\n${TLS}\nlocal:\n  web: { target: 127.0.0.1:8080, allow: [ "spiffe://p/ok/**" ], deny: [ "spiffe://p/*/x" ] }\n`,
  },
  endpointIdentityNeedsTls: {
    rule: rules.endpointIdentityNeedsTls,
    bad: service('{ endpoints: [ { address: 127.0.0.1:80 }, { address: 127.0.0.1:81, identity: "spiffe://prod.example/host/web-2" } ] }'),
    problems: [['services.s.endpoints[1].identity', 'an endpoint with an identity is reached over mTLS: configure tls (cert, key, ca)']],
    good: `${TLS}\n${service('{ endpoints: [ { address: 127.0.0.1:81, identity: "spiffe://prod.example/host/web-2" } ] }')}`,
  },
  inboundNeedsTls: {
    rule: rules.inboundNeedsTls,
    bad: 'inbound: { listen: 0.0.0.0:4143 }\n',
    problems: [['inbound', 'the inbound listener accepts mTLS only: configure tls (cert, key, ca)']],
    good: `inbound: { listen: 0.0.0.0:4143 }\n${TLS}\n`,
  },
  kubernetesMeshNeedsInboundTlsAndOneWorker: {
    rule: rules.kubernetesMeshNeedsInboundTlsAndOneWorker,
    bad: 'workers: 2\ninbound: { listen: 0.0.0.0:4000 }\nkubernetes:\n  mesh:\n    authorization:\n      users.shop: { allow: ["spiffe://cluster.local/ns/**x"] }\n',
    problems: [
      ['kubernetes.mesh', "mesh mode reaches other nodes' meshds over mTLS: configure tls (each node's own certificate)"],
      ['kubernetes.mesh.inboundPort', "every node's meshd is reached on 4143, but inbound.listen is on port 4000"],
      ['workers', 'mesh mode runs in one process per node for now: set workers: 1'],
      ['kubernetes.mesh.authorization.users.shop.allow[0]', '"**" may only stand alone as the last segment ("…/team/**"), got "spiffe://cluster.local/ns/**x"'],
    ],
    good: `${TLS}\ninbound: { listen: 0.0.0.0:4143 }\nkubernetes:\n  mesh:\n    authorization:\n      users.shop: { allow: ["spiffe://cluster.local/ns/shop/sa/*"] }\n`,
  },
  localServicesNeedInbound: {
    rule: rules.localServicesNeedInbound,
    bad: `${TLS}\nlocal:\n  web: { target: 127.0.0.1:8080 }\n`,
    problems: [['local', 'local services are reached through the inbound listener: configure inbound']],
    good: `${TLS}\nlocal: {}\n`,
  },
  adminListenDiffersFromOutbound: {
    rule: rules.adminListenDiffersFromOutbound,
    bad: 'admin: { listen: 127.0.0.1:9000 }\noutbound: { listen: 127.0.0.1:9000 }\n',
    problems: [['admin.listen', 'same address as outbound.listen (127.0.0.1:9000)']],
    good: 'admin: { listen: 127.0.0.1:0 }\noutbound: { listen: 127.0.0.1:0 }\n',
  },
  outboundOffLoopbackNeedsAllowFrom: {
    rule: rules.outboundOffLoopbackNeedsAllowFrom,
    bad: 'outbound: { listen: 0.0.0.0:4140 }\n',
    problems: [['outbound.listen', "0.0.0.0:4140 is reachable from other hosts: set outbound.allowFrom to the callers' ranges (e.g. the node's pod CIDR)"]],
    good: 'outbound: { listen: 0.0.0.0:4140, allowFrom: [ node-pod-cidrs ] }\n',
  },
  metricsOffLoopbackNeedsAllowFrom: {
    rule: rules.metricsOffLoopbackNeedsAllowFrom,
    bad: 'metrics: { listen: "[::]:9991" }\n',
    problems: [['metrics.listen', "[::]:9991 is reachable from other hosts: set metrics.allowFrom to your Prometheus servers' ranges"]],
    good: 'metrics: { listen: "[::]:9991", allowFrom: [ 10.0.0.0/8 ] }\n',
  },
  metricsListenIsFree: {
    rule: rules.metricsListenIsFree,
    bad: `${TLS}\ninbound: { listen: 0.0.0.0:4143 }\nmetrics: { listen: 0.0.0.0:4143, allowFrom: [ 10.0.0.0/8 ] }\n`,
    problems: [['metrics.listen', 'same address as inbound.listen (0.0.0.0:4143)']],
    good: `${TLS}\ninbound: { listen: 0.0.0.0:4143 }\nmetrics: { listen: 0.0.0.0:9991, allowFrom: [ 10.0.0.0/8 ] }\n`,
  },
};

describe('config rules', () => {
  for (const [name, c] of Object.entries(CASES)) {
    it(`${name} reports its problem at its path`, () => {
      assert.deepEqual(problemsOf(c.rule, c.bad), c.problems);
    });
    it(`${name} is silent when the rule holds`, () => {
      assert.deepEqual(problemsOf(c.rule, c.good), []);
      assert.deepEqual(problemsOf(c.rule, ''), []);
    });
  }

  it('has a case for every rule the module exports', () => {
    const helpers = new Set(['checkConfig', 'forEachService', 'reportDuplicateEndpoints', 'CONFIG_RULES']);
    const exported = Object.keys(rules).filter((k) => !helpers.has(k));
    assert.deepEqual(exported.sort(), Object.keys(CASES).sort());
  });

  it('finds nothing to report in a config that uses every section', () => {
    const problems: string[] = [];
    rules.checkConfig(
      subjectOf(`
admin: { listen: 127.0.0.1:9990 }
outbound: { listen: 0.0.0.0:4140, allowFrom: [ 10.244.0.0/16 ] }
inbound: { listen: 0.0.0.0:4143 }
${TLS}
workers: 2
local:
  web: { target: 127.0.0.1:8080, allow: [ "spiffe://prod.example/**" ], concurrency: { adaptive: true } }
services:
  users:
    endpoints: [ { address: 10.0.0.1:80, identity: "spiffe://prod.example/host/a" }, { address: 10.0.0.2:80 } ]
    balancer: { algorithm: ring-hash, hashOn: { header: x-user } }
    healthCheck: { http: { path: /healthz }, interval: 1s }
    concurrency: { adaptive: true, initialLimit: 50 }
    retries: { backoff: { base: 10ms, max: 1s } }
  pg:
    endpoints: [ { address: 10.0.0.3:5432 } ]
    tcp: { listen: 127.0.0.1:15432 }
`),
      (path) => problems.push(formatPath(path)),
    );
    assert.deepEqual(problems, []);
  });

  it('lists problems service by service, then across the config, then listener clashes', () => {
    let problems: string[] = [];
    try {
      parseConfig(
        `
outbound: { listen: 0.0.0.0:4140 }
inbound: {}
workers: 2
services:
  a:
    tcp: { listen: 127.0.0.1:9990 }
    retries: { backoff: { base: 1s } }
    timeout: 0s
  b:
    endpoints: [ { address: 127.0.0.1:1, identity: "spiffe://p/x" }, { address: 127.0.0.1:1 } ]
    tcp: { listen: 127.0.0.1:0 }
`,
        't.yaml',
        '/',
      );
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      problems = err.problems.map((p) => p.path);
    }
    assert.deepEqual(problems, [
      'services.a.timeout',
      'services.a.retries.backoff.base',
      'services.b.endpoints[1].address',
      'services.b.endpoints[0].identity',
      'inbound',
      'outbound.listen',
      'services.a.tcp.listen',
      'services.b.tcp.listen',
    ]);
  });
});
