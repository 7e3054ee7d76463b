import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RequestRedirect } from '../../../src/config/types.ts';
import { encodePath, modifiedTarget, redirectLocation, replacePrefix, rewrittenHead } from '../../../src/routing/url-rewrite.ts';
import type { RequestHead } from '../../../src/stack/exchange.ts';
import { fakeHead } from '../../helpers/fake-exchange.ts';

function head(path: string, fields: Record<string, string> = { host: 'users' }): RequestHead {
  return fakeHead({ path, fields });
}

const redirect = (r: Partial<RequestRedirect>): RequestRedirect => ({
  scheme: undefined,
  hostname: undefined,
  path: undefined,
  port: undefined,
  statusCode: 302,
  ...r,
});

describe('ReplacePrefixMatch', () => {
  it("follows Gateway API's table", () => {
    // [request path, prefix matched, replacement, result]
    const table: [string, string, string, string][] = [
      ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
      ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
      ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
      ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
      ['/foo', '/foo', '/xyz', '/xyz'],
      ['/foo/', '/foo', '/xyz', '/xyz/'],
      ['/foo/bar', '/foo', '', '/bar'],
      ['/foo/', '/foo', '', '/'],
      ['/foo', '/foo', '', '/'],
      ['/foo/', '/foo', '/', '/'],
      ['/foo', '/foo', '/', '/'],
      ['/any/thing', '/', '/api', '/api/any/thing'],
    ];
    for (const [path, prefix, replacement, want] of table) assert.equal(replacePrefix(path, prefix, replacement), want, `${path} ${prefix} → ${replacement}`);
  });

  it('keeps the query, the caller’s spelling of a normal path, and encodes a decoded one again', () => {
    const modifier = { type: 'ReplacePrefixMatch', value: '/v2' } as const;
    assert.equal(modifiedTarget('/v1/items?x=1&y=%2F', modifier, '/v1'), '/v2/items?x=1&y=%2F');
    assert.equal(modifiedTarget("/v1/a:b@c!$&'()*+,;=", modifier, '/v1'), "/v2/a:b@c!$&'()*+,;=");
    // Judged as /v1/a b, /v1/x and /v1/a?b#c: what goes upstream is what was judged, with nothing that changes its meaning.
    assert.equal(modifiedTarget('/v1/a%20b', modifier, '/v1'), '/v2/a%20b');
    assert.equal(modifiedTarget('//v1/./y/../x', modifier, '/v1'), '/v2/x');
    assert.equal(modifiedTarget('/v1/a%3Fb%23c%0D%0A', modifier, '/v1'), '/v2/a%3Fb%23c%0D%0A');
    assert.equal(modifiedTarget('/v1/%C3%A9t%C3%A9', modifier, '/v1'), '/v2/%C3%A9t%C3%A9');
    assert.equal(modifiedTarget('/v1/x?q', { type: 'ReplaceFullPath', value: '/fixed' }, '/v1'), '/fixed?q');
  });

  it('encodes what a path may not carry', () => {
    assert.equal(encodePath('/a b/%/é/\u0000/?#'), '/a%20b/%25/%C3%A9/%00/%3F%23');
    assert.equal(encodePath('/\ud800'), '/%EF%BF%BD');
  });
});

describe('RequestRedirect Location', () => {
  it('takes what is not set from the request', () => {
    assert.equal(redirectLocation(redirect({}), head('/a?b=1'), '/', 'svc'), 'http://users/a?b=1');
    assert.equal(redirectLocation(redirect({}), head('/a', { host: 'users:8080' }), '/', 'svc'), 'http://users:8080/a');
    assert.equal(redirectLocation(redirect({}), head('/a', { host: '[::1]:4140' }), '/', 'svc'), 'http://[::1]:4140/a');
    assert.equal(redirectLocation(redirect({}), head('/a', {}), '/', 'svc'), 'http://svc/a');
  });

  it("uses a set scheme's own port and leaves it out, keeps a set port", () => {
    const h = head('/a', { host: 'users:8080' });
    assert.equal(redirectLocation(redirect({ scheme: 'https' }), h, '/', 'svc'), 'https://users/a');
    assert.equal(redirectLocation(redirect({ scheme: 'https', port: 8443 }), h, '/', 'svc'), 'https://users:8443/a');
    assert.equal(redirectLocation(redirect({ port: 80 }), h, '/', 'svc'), 'http://users/a');
    assert.equal(redirectLocation(redirect({ scheme: 'http', hostname: 'new.example' }), h, '/', 'svc'), 'http://new.example/a');
  });

  it('rewrites the path as URLRewrite does, and encodes bytes a field cannot carry', () => {
    const prefix = redirect({ path: { type: 'ReplacePrefixMatch', value: '/new' } });
    assert.equal(redirectLocation(prefix, head('/old/x?y'), '/old', 'svc'), 'http://users/new/x?y');
    assert.equal(redirectLocation(redirect({}), head('/é ?q=ü'), '/', 'svc'), 'http://users/%C3%A9%20?q=%C3%BC');
  });
});

describe('URLRewrite head', () => {
  it('changes the path and the Host sent upstream, and nothing else', () => {
    const original = head('/old/x?y', { host: 'users', 'x-a': '1' });
    const out = rewrittenHead(original, { hostname: 'users.internal', path: { type: 'ReplacePrefixMatch', value: '/new' } }, '/old');
    assert.equal(out.path, '/new/x?y');
    assert.equal(out.authority, 'users.internal');
    assert.equal(out.field('host'), 'users.internal');
    assert.equal(out.field('x-a'), '1');
    assert.equal(out.fields, original.fields);
    const pathOnly = rewrittenHead(original, { hostname: undefined, path: { type: 'ReplaceFullPath', value: '/p' } }, '/');
    assert.deepEqual([pathOnly.path, pathOnly.authority, pathOnly.field('host')], ['/p?y', undefined, 'users']);
  });
});
