import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSocketAddress } from '../../../src/config/address.ts';
import { defaultConfig, loadConfigFile, parseConfig, parseEndpointsFile } from '../../../src/config/load.ts';
import { ConfigError, type ConfigProblem } from '../../../src/errors.ts';

function problemsOf(text: string): ConfigProblem[] {
  try {
    parseConfig(text, 'test.yaml', '/etc/meshd');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return [...err.problems];
  }
  assert.fail('expected the config to be rejected');
}

describe('config loading', () => {
  it('embeds a default config on the fixed loopback ports', () => {
    const config = defaultConfig();
    assert.deepEqual(config.outbound.listen, { host: '127.0.0.1', port: 4140 });
    assert.deepEqual(config.admin.listen, { host: '127.0.0.1', port: 9990 });
    assert.equal(config.services.size, 0);
    assert.equal(config.source, '<embedded default>');
  });

  it('normalises units, fills defaults and resolves relative paths', () => {
    const config = parseConfig(
      `
services:
  users:
    endpoints:
      - { address: "[::1]:8080", zone: a, labels: { version: v1 } }
      - { address: 127.0.0.1:8081, weight: 3 }
    endpointsFile: endpoints/users.yaml
    timeout: 1m30s
    pool: { maxConnections: 8 }
outbound: { maxHeaderSize: 32KiB }
`,
      'test.yaml',
      '/etc/meshd',
    );
    const users = config.services.get('users');
    assert.ok(users);
    assert.equal(users.timeoutMs, 90_000);
    assert.equal(users.connectTimeoutMs, 2_000);
    assert.equal(users.pool.maxConnections, 8);
    assert.equal(users.pool.idleTimeoutMs, 30_000);
    assert.equal(users.endpointsFile, '/etc/meshd/endpoints/users.yaml');
    assert.equal(users.endpoints[0]?.address, '[::1]:8080');
    assert.equal(users.endpoints[0].host, '::1');
    assert.equal(users.endpoints[0].weight, 1);
    assert.equal(users.endpoints[1]?.weight, 3);
    assert.equal(users.balancer.algorithm, 'p2c-ewma');
    assert.equal(users.balancer.failurePenalty, 10);
    assert.equal(users.balancer.slowStart.windowMs, 0);
    assert.equal(config.outbound.maxHeaderSizeBytes, 32_768);
    assert.equal(config.outbound.maxConnections, 'auto');
    assert.equal(config.drainTimeoutMs, 10_000);
  });

  it('deep-freezes the result', () => {
    const config = parseConfig('services: { a: { endpoints: [ { address: 127.0.0.1:1 } ] } }', 't', '/');
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.services.get('a')?.endpoints[0]));
    assert.throws(() => {
      (config.outbound as { headersTimeoutMs: number }).headersTimeoutMs = 1;
    }, TypeError);
  });

  it('names the path, line and expectation of a bad duration', () => {
    const problems = problemsOf('services:\n  users:\n    timeout: fast\n');
    assert.deepEqual(problems, [{ path: 'services.users.timeout', line: 3, message: 'expected a duration like "250ms", got "fast"' }]);
  });

  it('rejects unknown keys at every level, naming the allowed ones', () => {
    const problems = problemsOf('colour: blue\nservices:\n  users:\n    endpoints:\n      - { address: 127.0.0.1:1, port: 2 }\n');
    assert.deepEqual(
      problems.map((p) => [p.path, p.line]),
      [
        ['colour', 1],
        ['services.users.endpoints[0].port', 5],
      ],
    );
    assert.match(problems[0]!.message, /unknown key \(expected one of: node, log, tracing, admin/);
  });

  it('reports every problem at once, not only the first', () => {
    const problems = problemsOf(`
outbound: { listen: "localhost", maxConnections: 0, maxHeaderSize: 16 }
services:
  users: { timeout: 5, balancer: { algorithm: magic } }
  Bad_Name: {}
`);
    const paths = problems.map((p) => p.path).sort();
    assert.deepEqual(paths, [
      'outbound.listen',
      'outbound.maxConnections',
      'outbound.maxHeaderSize',
      'services.Bad_Name',
      'services.users.balancer.algorithm',
      'services.users.timeout',
    ]);
    assert.match(problems.find((p) => p.path === 'outbound.maxHeaderSize')!.message, /expected a size like "16KiB", got 16/);
    assert.match(problems.find((p) => p.path === 'services.users.balancer.algorithm')!.message, /expected one of "p2c-ewma", .*, got "magic"/);
  });

  it('checks what the schema cannot: duplicates, clashing listeners, mTLS-only endpoints', () => {
    const problems = problemsOf(`
admin: { listen: 127.0.0.1:9000 }
outbound: { listen: 127.0.0.1:9000 }
services:
  users:
    endpoints:
      - { address: 127.0.0.1:8080 }
      - { address: 127.0.0.1:8080 }
      - { address: 127.0.0.1:8081, identity: spiffe://prod.example/host/web-2 }
`);
    assert.deepEqual(
      problems.map((p) => p.path),
      ['services.users.endpoints[1].address', 'services.users.endpoints[2].identity', 'admin.listen'],
    );
    assert.match(problems[0]!.message, /duplicate of services\.users\.endpoints\[0\]/);
  });

  it('reports YAML syntax errors with their line', () => {
    const problems = problemsOf('services:\n  users: [unclosed\n');
    assert.equal(problems.length >= 1, true);
    assert.match(problems[0]!.message, /not valid YAML/);
    assert.equal(typeof problems[0]!.line, 'number');
  });

  it('rejects duplicate keys instead of silently keeping the last', () => {
    const problems = problemsOf('services: {}\nservices: {}\n');
    assert.match(problems[0]!.message, /not valid YAML/);
  });

  it('treats an empty file as all defaults', () => {
    assert.equal(parseConfig('', 'empty.yaml', '/').services.size, 0);
  });

  it('takes workers as a count or auto, one by default, and nothing else', () => {
    assert.equal(parseConfig('', 't', '/').workers, 1);
    assert.equal(parseConfig('workers: auto\n', 't', '/').workers, 'auto');
    assert.equal(parseConfig('workers: 4\n', 't', '/').workers, 4);
    for (const bad of ['0', '-1', '2.5', 'many', '"4"']) {
      const problems = problemsOf(`workers: ${bad}\n`);
      assert.ok(
        problems.some((p) => p.path === 'workers' && p.line === 1),
        `workers: ${bad} → ${JSON.stringify(problems)}`,
      );
    }
  });

  it('reports a missing file as one problem', async () => {
    await assert.rejects(
      loadConfigFile('/nonexistent/meshd.yaml', () => Promise.reject(Object.assign(new Error('ENOENT'), { code: 'ENOENT' }))),
      (err: unknown) => err instanceof ConfigError && err.problems[0]?.message === 'file not found',
    );
  });
});

describe('endpoints file', () => {
  it('parses a list of endpoints', () => {
    const endpoints = parseEndpointsFile('endpoints:\n  - { address: 10.0.0.1:80, zone: b }\n', 'f.yaml');
    assert.equal(endpoints[0]?.address, '10.0.0.1:80');
    assert.equal(endpoints[0].zone, 'b');
  });
  it('rejects truncated or invalid files', () => {
    assert.throws(() => parseEndpointsFile('endpoints:\n  - { address: 10.0.0.1:80, zo', 'f.yaml'), ConfigError);
    assert.throws(() => parseEndpointsFile('', 'f.yaml'), ConfigError);
    assert.throws(() => parseEndpointsFile('endpoints: [ { address: nope } ]', 'f.yaml'), ConfigError);
  });
});

describe('socket addresses', () => {
  it('accepts IPv4, bracketed IPv6 and host names', () => {
    assert.deepEqual(parseSocketAddress('127.0.0.1:80', { allowPortZero: false }), { host: '127.0.0.1', port: 80 });
    assert.deepEqual(parseSocketAddress('[::1]:4140', { allowPortZero: false }), { host: '::1', port: 4140 });
    assert.deepEqual(parseSocketAddress('users.internal:8080', { allowPortZero: false }), { host: 'users.internal', port: 8080 });
  });
  it('explains what is wrong', () => {
    assert.match(JSON.stringify(parseSocketAddress('::1:80', { allowPortZero: false })), /brackets/);
    assert.match(JSON.stringify(parseSocketAddress('host', { allowPortZero: false })), /host:port/);
    assert.match(JSON.stringify(parseSocketAddress('h:0', { allowPortZero: false })), /outside 1-65535/);
    assert.equal(typeof parseSocketAddress('h:0', { allowPortZero: true }), 'object');
    assert.match(JSON.stringify(parseSocketAddress('bad_host:1', { allowPortZero: false })), /neither/);
  });
});

describe('balancer config', () => {
  it('requires hashOn exactly for ring-hash', () => {
    const missing = problemsOf('services:\n  s:\n    balancer: { algorithm: ring-hash }\n');
    assert.deepEqual(
      missing.map((p) => p.path),
      ['services.s.balancer.hashOn'],
    );
    const stray = problemsOf('services:\n  s:\n    balancer: { hashOn: { header: x-user } }\n');
    assert.match(stray[0]!.message, /only used by algorithm: ring-hash/);
    const both = problemsOf('services:\n  s:\n    balancer: { algorithm: ring-hash, hashOn: { header: a, cookie: b } }\n');
    assert.equal(both[0]!.path, 'services.s.balancer.hashOn');
  });
});

describe('outbound exposure', () => {
  it('requires a source allow-list when the outbound listener leaves loopback', () => {
    const problems = problemsOf('outbound: { listen: 0.0.0.0:4140 }\n');
    assert.equal(problems[0]?.path, 'outbound.listen');
    assert.match(problems[0].message, /allowFrom/);
    assert.equal(parseConfig('outbound: { listen: 0.0.0.0:4140, allowFrom: [ 10.244.0.0/16, "fd00::/8" ] }\n', 't', '/').outbound.allowFrom?.length, 2);
    assert.match(problemsOf('outbound: { listen: 127.0.0.1:4140, allowFrom: [ 10.0.0.0/33 ] }\n')[0]!.message, /address range/);
  });
});

describe('scrape listener', () => {
  it('is off unless configured, needs an address, and a source allow-list off loopback', () => {
    assert.equal(parseConfig('', 't', '/').metrics, undefined);
    assert.deepEqual(
      problemsOf('metrics: { allowFrom: [ 10.0.0.0/8 ] }\n').map((p) => p.path),
      ['metrics'],
    );
    assert.match(problemsOf('metrics: { listen: 0.0.0.0:9991 }\n')[0]!.message, /set metrics.allowFrom/);
    assert.match(problemsOf('metrics: { listen: 127.0.0.1:9991, allowFrom: [ nowhere ] }\n')[0]!.message, /address range/);
    assert.match(problemsOf('metrics: { listen: 127.0.0.1:9991, path: /stats }\n')[0]!.message, /unknown key/);
    const config = parseConfig('metrics: { listen: 0.0.0.0:9991, allowFrom: [ node-pod-cidrs, 10.0.0.0/8 ] }\n', 't', '/');
    assert.deepEqual(config.metrics, { listen: { host: '0.0.0.0', port: 9991 }, allowFrom: ['node-pod-cidrs', '10.0.0.0/8'] });
  });
});

describe('service TCP listener exposure', () => {
  it('requires a source allow-list when a service TCP listener leaves loopback, as for outbound', () => {
    const service = (tcp: string): string => `services:\n  pg:\n    endpoints: [ { address: 127.0.0.1:5432 } ]\n    tcp: ${tcp}\n`;
    const problems = problemsOf(service('{ listen: 0.0.0.0:15432 }'));
    assert.equal(problems[0]?.path, 'services.pg.tcp.listen');
    assert.match(problems[0].message, /allowFrom/);
    assert.equal(problemsOf(service('{ listen: "[::]:15432" }'))[0]?.path, 'services.pg.tcp.listen');
    const config = parseConfig(service('{ listen: 0.0.0.0:15432, allowFrom: [ 10.244.1.0/24 ] }'), 't', '/');
    assert.deepEqual(config.services.get('pg')?.tcp?.allowFrom, ['10.244.1.0/24']);
    assert.equal(parseConfig(service('{ listen: 127.0.0.1:15432 }'), 't', '/').services.get('pg')?.tcp?.allowFrom, undefined);
  });
});

describe('identity patterns in local policies', () => {
  it('rejects "**" anywhere but as the whole last segment', () => {
    const problems = problemsOf(
      'inbound: {}\ntls: { cert: c, key: k, ca: a }\nlocal:\n  web: { target: 127.0.0.1:8080, deny: [ "spiffe://p/ok/**", "spiffe://p/**/x" ] }\n',
    );
    assert.deepEqual(
      problems.map((p) => p.path),
      ['local.web.deny[1]'],
    );
  });
});
