import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RouteMatch, RouteRule } from '../../../src/config/types.ts';
import { compileAccess } from '../../../src/routing/access.ts';
import { matchPath, queryParams } from '../../../src/routing/match-path.ts';
import { RouteTable } from '../../../src/routing/route-table.ts';
import type { RequestHead } from '../../../src/stack/exchange.ts';
import { fakeHead } from '../../helpers/fake-exchange.ts';

function head(path: string, method = 'GET', fields: Record<string, string> = {}): RequestHead {
  return fakeHead({ path, method, fields });
}

function rule(name: string, ...matches: Partial<RouteMatch>[]): RouteRule {
  return {
    name,
    matches: matches.map((m) => ({ path: undefined, method: undefined, headers: [], queryParams: [], callers: [], ...m })),
    requestHeaders: undefined,
    responseHeaders: undefined,
    mirror: undefined,
    redirect: undefined,
    rewrite: undefined,
    backendRefs: [],
    timeoutMs: undefined,
    backendTimeoutMs: undefined,
    retry: undefined,
    rateLimit: undefined,
  };
}

const pick = (table: RouteTable<string>, h: RequestHead, caller?: string): string | undefined => table.select({ head: h, caller })?.value;

describe('route table (Gateway API precedence)', () => {
  const table = new RouteTable(
    [
      rule('catch-all'),
      rule('api', { path: { type: 'PathPrefix', value: '/api' } }),
      rule('api-v2', { path: { type: 'PathPrefix', value: '/api/v2/' } }),
      rule('exact', { path: { type: 'Exact', value: '/api/health' } }),
      rule('post-api', { path: { type: 'PathPrefix', value: '/api' }, method: 'POST' }),
      rule('canary', { path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-canary', type: 'Exact', value: '1' }] }),
      rule('debug', { path: { type: 'PathPrefix', value: '/api' }, queryParams: [{ name: 'debug', type: 'RegularExpression', value: '1|true' }] }),
      rule('regex', { path: { type: 'RegularExpression', value: '/users/[0-9]+' } }),
      rule('team', { path: { type: 'PathPrefix', value: '/team' }, callers: ['spiffe://prod/ns/team/**'] }),
    ],
    (r) => r.name,
  );

  const cases: [string, RequestHead, string | undefined, string?][] = [
    ['exact beats every prefix', head('/api/health'), 'exact'],
    ['longest prefix wins', head('/api/v2/items'), 'api-v2'],
    ['a prefix matches whole segments only', head('/apiary'), 'catch-all'],
    ['prefix matches itself and with a trailing slash', head('/api/'), 'api'],
    ['method beats fewer conditions at equal prefix', head('/api/x', 'POST'), 'post-api'],
    ['method ranks above headers', head('/api/x', 'POST', { 'x-canary': '1' }), 'post-api'],
    ['a header match beats the bare prefix', head('/api/x', 'GET', { 'x-canary': '1' }), 'canary'],
    ['query parameters by regular expression, first value counts', head('/api/x?debug=true&debug=0'), 'debug'],
    ['a query value that does not match', head('/api/x?debug=yes'), 'api'],
    ['regular expression matches the whole path', head('/users/42'), 'regex'],
    ['regular expression anchored', head('/users/42/x'), 'catch-all'],
    ['callers by verified identity', head('/team/a'), 'team', 'spiffe://prod/ns/team/sa/web'],
    ['no identity: the callers rule does not match', head('/team/a'), 'catch-all'],
    ['dot segments are resolved before matching', head('/x/../api/health'), 'exact'],
  ];
  for (const [what, h, want, caller] of cases) it(what, () => assert.equal(pick(table, h, caller), want));

  it('matches patterns in linear time: a caller cannot stall meshd with a crafted header or path', () => {
    // On a backtracking engine each of these takes about 2^64 steps: the test could never finish.
    const hostile = new RouteTable(
      [
        rule('hdr', { headers: [{ type: 'RegularExpression', name: 'x-user', value: '(\\w+\\s?)*' }] }),
        rule('path', { path: { type: 'RegularExpression', value: '/items/([a-z0-9]+)+/details' } }),
      ],
      (r) => r.name,
    );
    assert.equal(pick(hostile, head('/', 'GET', { 'x-user': `${'a'.repeat(64)}!` })), undefined);
    assert.equal(pick(hostile, head(`/items/${'a'.repeat(64)}!`)), undefined);
    assert.equal(pick(hostile, head('/', 'GET', { 'x-user': 'ab cd' })), 'hdr');
    assert.equal(pick(hostile, head('/items/a1/details')), 'path');
  });

  it('without a catch-all, an unmatched request takes no route', () => {
    const t = new RouteTable([rule('only', { path: { type: 'Exact', value: '/a' } })], (r) => r.name);
    assert.equal(pick(t, head('/b')), undefined);
  });

  it('ties go to the rule written first', () => {
    const t = new RouteTable([rule('first', { method: 'GET' }), rule('second', { method: 'GET' })], (r) => r.name);
    assert.equal(pick(t, head('/')), 'first');
  });
});

describe('match path', () => {
  const cases: [string, string][] = [
    ['/a/b?x=1', '/a/b'],
    ['//a///b', '/a/b'],
    ['/a/./b/../c', '/a/c'],
    ['/../../etc', '/etc'],
    ['/%61dmin', '/admin'],
    ['/admin%2Fx', '/admin/x'],
    ['/a%5Cb', '/a/b'],
    ['/a\\b', '/a/b'],
    ['/public/%2e%2e/admin', '/admin'],
    ['/a/', '/a/'],
    ['/a/b/..', '/a/'],
    ['/%zz', '/%zz'],
    ['/caf%C3%A9', '/café'],
  ];
  for (const [input, want] of cases) it(`${input} → ${want}`, () => assert.equal(matchPath(input), want));

  it('query parameters: first value wins, names are case-sensitive', () => {
    const q = queryParams('/p?a=1&a=2&B=3');
    assert.equal(q.get('a'), '1');
    assert.equal(q.get('b'), undefined);
    assert.equal(q.get('B'), '3');
  });
});

describe('access rules', () => {
  const check = compileAccess([
    { action: 'deny', callers: [], methods: ['DELETE'], paths: [] },
    { action: 'deny', callers: ['spiffe://prod/ns/guest/**'], methods: [], paths: [] },
    { action: 'allow', callers: ['spiffe://prod/ns/web/**'], methods: [], paths: ['/api/*'] },
    { action: 'allow', callers: [], methods: ['GET'], paths: ['/health'] },
  ]);
  assert.ok(check !== undefined);
  const web = 'spiffe://prod/ns/web/sa/frontend';
  const cases: [string, { method: string; target: string } | undefined, string | undefined, boolean][] = [
    ['an allowed caller on an allowed path', { method: 'GET', target: '/api/users' }, web, true],
    ['the prefix itself', { method: 'GET', target: '/api' }, web, true],
    ['deny wins over allow', { method: 'DELETE', target: '/api/users' }, web, false],
    ['another caller is not allowed', { method: 'GET', target: '/api/users' }, 'spiffe://prod/ns/batch/sa/x', false],
    ['no identity is not allowed', { method: 'GET', target: '/api/users' }, undefined, false],
    ['a path outside the allow rules', { method: 'GET', target: '/internal' }, web, false],
    ['an encoded escape from the allowed prefix', { method: 'GET', target: '/api/%2e%2e/internal' }, web, false],
    ['anyone may GET /health', { method: 'GET', target: '/health' }, undefined, true],
    ['but not POST it', { method: 'POST', target: '/health' }, undefined, false],
    ['TCP: a deny by caller alone applies', undefined, 'spiffe://prod/ns/guest/sa/x', false],
    ['TCP: a deny naming methods refuses every connection (it refuses more, never less)', undefined, web, false],
  ];
  for (const [what, request, caller, allowed] of cases) it(what, () => assert.equal(check(request, caller).allowed, allowed));

  it('TCP: allow rules that name methods or paths never admit a connection', () => {
    const tcp = compileAccess([{ action: 'allow', callers: [], methods: [], paths: ['/x'] }]);
    assert.equal(tcp?.(undefined, 'spiffe://a/b').allowed, false);
    const byCaller = compileAccess([{ action: 'allow', callers: ['spiffe://a/**'], methods: [], paths: [] }]);
    assert.equal(byCaller?.(undefined, 'spiffe://a/b').allowed, true);
  });

  it('no rules: nothing to check', () => assert.equal(compileAccess([]), undefined));
});
