import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { downstreamResponseHeaders, http2ResponseHeaders, isMeshdField, upstreamRequestHeaders } from '../../../src/proxy/headers.ts';

function pairs(flat: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

describe('request headers', () => {
  it('drops hop-by-hop fields and those the Connection header names, keeping order and case', () => {
    const out = pairs(
      upstreamRequestHeaders(
        [
          'Host',
          'users',
          'Connection',
          'keep-alive, X-Trace-Hop',
          'X-Trace-Hop',
          '1',
          'TE',
          'trailers',
          'Transfer-Encoding',
          'chunked',
          'Upgrade',
          'h2c',
          'Proxy-Authorization',
          'x',
          'Accept',
          'a',
          'accept',
          'b',
        ],
        'keep-alive, X-Trace-Hop',
        { clientAddress: undefined, authority: undefined },
      ),
    );
    assert.deepEqual(out, [
      ['host', 'users'],
      ['te', 'trailers'],
      ['Accept', 'a'],
      ['accept', 'b'],
      ['via', '1.1 meshd'],
    ]);
  });

  it('drops HTTP/2 pseudo-headers and a TE other than trailers', () => {
    const out = pairs(
      upstreamRequestHeaders([':method', 'GET', ':authority', 'users', 'te', 'gzip', 'accept', '*/*'], undefined, {
        clientAddress: undefined,
        authority: 'users',
      }),
    );
    assert.deepEqual(out, [
      ['accept', '*/*'],
      ['host', 'users'],
      ['via', '1.1 meshd'],
    ]);
  });

  it('appends the caller to X-Forwarded-For and Forwarded (quoting IPv6) and to Via', () => {
    const out = new Map(
      pairs(
        upstreamRequestHeaders(
          ['Host', 'u', 'X-Forwarded-For', '203.0.113.1', 'x-forwarded-for', '203.0.113.2', 'Forwarded', 'for=203.0.113.1', 'Via', '1.0 edge'],
          undefined,
          {
            clientAddress: '::1',
            authority: undefined,
          },
        ),
      ),
    );
    assert.equal(out.get('x-forwarded-for'), '203.0.113.1, 203.0.113.2, ::1');
    assert.equal(out.get('forwarded'), 'for=203.0.113.1, for="[::1]";proto=http');
    assert.equal(out.get('via'), '1.0 edge, 1.1 meshd');
  });

  it('replaces Host with the absolute-form authority, and adds it when missing', () => {
    assert.deepEqual(pairs(upstreamRequestHeaders(['Host', 'wrong', 'Host', 'dup'], undefined, { clientAddress: undefined, authority: 'users' }))[0], [
      'host',
      'users',
    ]);
    assert.deepEqual(pairs(upstreamRequestHeaders([], undefined, { clientAddress: undefined, authority: 'users:80' }))[0], ['host', 'users:80']);
  });
});

describe("meshd's own fields", () => {
  it('are dropped from requests however they are spelled: case, and "_" for "-"', () => {
    const spoofs = [
      'x-meshd-peer-identity',
      'X-Meshd-Peer-Identity',
      'X_Meshd_Peer_Identity',
      'x_meshd-peer_identity',
      'X-MESHD-TIMEOUT-MS',
      'x_meshd_retryable',
      'x-meshd-anything-new',
    ];
    const raw = [
      'Host',
      'users',
      ...spoofs.flatMap((n) => [n, 'spiffe://evil.example/host/root']),
      'X-Meshd',
      'kept',
      'x-meshdx-y',
      'kept',
      'x-other_meshd-z',
      'kept',
    ];
    const out = pairs(upstreamRequestHeaders(raw, undefined, { clientAddress: undefined, authority: undefined }));
    assert.deepEqual(out, [
      ['host', 'users'],
      ['X-Meshd', 'kept'],
      ['x-meshdx-y', 'kept'],
      ['x-other_meshd-z', 'kept'],
      ['via', '1.1 meshd'],
    ]);
    for (const n of spoofs) assert.equal(isMeshdField(n), true, n);
    for (const n of ['x-meshd', 'x-mesh-d', 'meshd-x', 'y-meshd-a', 'x-meshdz']) assert.equal(isMeshdField(n), false, n);
  });
});

describe('fields HTTP/2 forbids', () => {
  it('never go upstream: connection-specific fields, HTTP2-Settings, TE other than trailers', () => {
    const raw = [
      'Host',
      'u',
      'Connection',
      'Upgrade, HTTP2-Settings',
      'Upgrade',
      'h2c',
      'HTTP2-Settings',
      'AAMAAABkAARAAAAAAAIAAAAA',
      'TE',
      'gzip',
      'Keep-Alive',
      'timeout=5',
      'Proxy-Connection',
      'keep-alive',
      'Transfer-Encoding',
      'chunked',
      'accept',
      '*/*',
    ];
    const out = pairs(upstreamRequestHeaders(raw, 'Upgrade, HTTP2-Settings', { clientAddress: undefined, authority: undefined }));
    assert.deepEqual(out, [
      ['host', 'u'],
      ['accept', '*/*'],
      ['via', '1.1 meshd'],
    ]);
    // Even when Connection does not list it.
    assert.deepEqual(
      pairs(upstreamRequestHeaders(['http2-settings', 'x'], undefined, { clientAddress: undefined, authority: 'u' })).map(([n]) => n),
      ['host', 'via'],
    );
  });

  it('reach an HTTP/2 caller with one value per single-value field; with everyField, one per field but Set-Cookie', () => {
    const upstream = { 'content-type': ['text/plain', 'text/html'], location: ['/a', '/b'], 'x-list': ['a', 'b'], 'set-cookie': ['a=1', 'b=2'], etag: '"x"' };
    assert.deepEqual(http2ResponseHeaders(upstream), {
      'content-type': 'text/plain',
      location: '/a',
      'x-list': ['a', 'b'],
      'set-cookie': ['a=1', 'b=2'],
      etag: '"x"',
    });
    assert.deepEqual(http2ResponseHeaders(upstream, true), {
      'content-type': 'text/plain',
      location: '/a',
      'x-list': 'a',
      'set-cookie': ['a=1', 'b=2'],
      etag: '"x"',
    });
    const clean = { 'content-type': 'text/plain' };
    assert.equal(http2ResponseHeaders(clean), clean, 'nothing to change: no copy');
    assert.deepEqual(downstreamResponseHeaders({ 'http2-settings': 'x', a: 'b' }), { a: 'b', via: '1.1 meshd' });
  });
});

describe('response headers', () => {
  it('drops hop-by-hop fields and appends Via', () => {
    const out = downstreamResponseHeaders({
      'content-type': 'text/plain',
      connection: 'close, x-internal',
      'x-internal': 'secret',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'set-cookie': ['a=1', 'b=2'],
      via: '1.1 backend',
    });
    assert.deepEqual(out, { 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'], via: '1.1 backend, 1.1 meshd' });
  });
});
