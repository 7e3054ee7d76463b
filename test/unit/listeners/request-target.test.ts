import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MeshError } from '../../../src/errors.ts';
import { autoConnectionCap, fdReserve, openFileLimit } from '../../../src/listeners/connection-cap.ts';
import { parseRequestTarget, portOf, serviceName } from '../../../src/listeners/request-target.ts';

describe('request target', () => {
  it('routes origin-form requests by the Host header, ignoring case, with the port apart', () => {
    assert.deepEqual(parseRequestTarget('/a?b=1', 'Users:8080'), { service: 'users', path: '/a?b=1', authority: undefined, port: 8080 });
    assert.deepEqual(parseRequestTarget('/', 'users.'), { service: 'users', path: '/', authority: undefined, port: undefined });
  });

  it('routes absolute-form requests by their authority and rewrites the path', () => {
    assert.deepEqual(parseRequestTarget('http://users/x?y', 'ignored:9'), { service: 'users', path: '/x?y', authority: 'users', port: undefined });
    assert.deepEqual(parseRequestTarget('HTTP://users:81', undefined), { service: 'users', path: '/', authority: 'users:81', port: 81 });
    assert.deepEqual(parseRequestTarget('http://users?q=1', undefined), { service: 'users', path: '/?q=1', authority: 'users', port: undefined });
  });

  it('reads a port of 1–65535 and nothing else', () => {
    assert.deepEqual(
      ['users:1', 'users:65535', 'users:65536', 'users:0', 'users:', 'users:8o', 'users:080', 'users:999999', '[::1]', '[::1]:80', 'users'].map(portOf),
      [1, 65535, undefined, undefined, undefined, undefined, 80, undefined, undefined, 80, undefined],
    );
  });

  it('refuses what it cannot route, with bad_request', () => {
    for (const [url, host] of [
      ['/', undefined],
      ['/', ''],
      ['/', '[::1]:80'],
      ['/', 'bad_name'],
      ['https://users/', undefined],
      ['http://user:pw@users/', undefined],
      ['*', 'users'],
      ['users:443', undefined],
    ] as const) {
      const result = parseRequestTarget(url, host);
      assert.ok(result instanceof MeshError, `${url} ${String(host)}`);
      assert.equal(result.code, 'bad_request');
    }
  });

  it('extracts service names', () => {
    assert.equal(serviceName('a.b-c:1'), 'a.b-c');
    assert.equal(serviceName('-x'), undefined);
  });
});

describe('connection caps', () => {
  it('keeps a reserve and gives outbound half of the rest', () => {
    assert.equal(fdReserve(256), 64);
    assert.equal(autoConnectionCap(256), 96);
    assert.equal(fdReserve(1_048_576), 1024);
    assert.equal(autoConnectionCap(20_000), 9_488);
    assert.equal(autoConnectionCap(40), 16);
    assert.equal(autoConnectionCap(undefined), 10_000);
  });

  it('reads the soft open-file limit from /proc/self/limits', () => {
    const text = 'Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 524288               files\n';
    assert.equal(
      openFileLimit(() => text),
      1024,
    );
    assert.equal(
      openFileLimit(() => 'Max open files unlimited unlimited files'),
      Number.POSITIVE_INFINITY,
    );
    assert.equal(
      openFileLimit(() => {
        throw new Error('no /proc');
      }),
      undefined,
    );
  });
});
