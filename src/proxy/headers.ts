/**
 * Header rewriting for a forwarding proxy (RFC 9110 §7.6): connection-specific
 * fields and any field the Connection header names are dropped in both
 * directions; the request gains Via, X-Forwarded-For and Forwarded. Every
 * request field of meshd's own namespace (`x-meshd-*`, however it is spelled)
 * is dropped: only meshd sets those. HTTP/2 forbids connection-specific
 * fields outright (RFC 9113 §8.2.2) and Node refuses to send them, so none of
 * them ever reaches an HTTP/2 hop in either direction.
 */
import { isIP } from 'node:net';

/** Fields that describe one connection and never cross a proxy. */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'transfer-encoding',
  'upgrade',
  'expect',
  // Belongs to the HTTP/1.1 → h2c upgrade, which meshd never performs; HTTP/2 forbids it.
  'http2-settings',
]);

const MESHD_PREFIX = 'x-meshd-';

/**
 * Whether a field belongs to meshd's own namespace, compared case-insensitively with "_" as "-":
 * CGI, WSGI and Rack read `X_Meshd_Peer_Identity` as `x-meshd-peer-identity`. Only meshd may set
 * these (the verified peer identity, the remaining deadline); a caller's copy is a spoof.
 */
export function isMeshdField(name: string): boolean {
  if (name.length <= MESHD_PREFIX.length) return false;
  const c = name.charCodeAt(0);
  if (c !== 120 /* x */ && c !== 88 /* X */) return false;
  return name.slice(0, MESHD_PREFIX.length).toLowerCase().replaceAll('_', '-') === MESHD_PREFIX;
}

const VIA = '1.1 meshd';

/** Field names listed in a Connection header value, lowercased. */
function connectionTokens(value: string | undefined): ReadonlySet<string> | undefined {
  if (value === undefined || value === '' || value === 'keep-alive' || value === 'close') return undefined;
  return new Set(
    value
      .toLowerCase()
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '' && s !== 'close' && s !== 'keep-alive'),
  );
}

export interface ForwardedFor {
  clientAddress: string | undefined;
  /** When set, replaces the Host header (absolute-form requests, RFC 9112 §3.2.2). */
  authority: string | undefined;
}

/**
 * Builds the upstream request headers as a flat [name, value, …] list from the
 * caller's raw headers, preserving order, case and duplicates.
 */
export function upstreamRequestHeaders(rawHeaders: readonly string[], connection: string | undefined, fwd: ForwardedFor): string[] {
  const extra = connectionTokens(connection);
  const out: string[] = [];
  let xff: string | undefined;
  let forwarded: string | undefined;
  let via: string | undefined;
  let sawHost = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    // HTTP/2 pseudo-headers (":method", ":authority"…) are rebuilt by the upstream client.
    if (name.charCodeAt(0) === 58 /* ":" */) continue;
    const lower = name.toLowerCase();
    if (isMeshdField(lower)) continue;
    if (HOP_BY_HOP.has(lower) || extra?.has(lower) === true) {
      // "TE: trailers" is end-to-end in HTTP/2 and gRPC requires it.
      if (lower === 'te' && value.trim().toLowerCase() === 'trailers') out.push('te', 'trailers');
      continue;
    }
    switch (lower) {
      case 'host':
        if (sawHost) continue;
        sawHost = true;
        out.push('host', fwd.authority ?? value);
        continue;
      case 'x-forwarded-for':
        xff = xff === undefined ? value : `${xff}, ${value}`;
        continue;
      case 'forwarded':
        forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`;
        continue;
      case 'via':
        via = via === undefined ? value : `${via}, ${value}`;
        continue;
    }
    out.push(name, value);
  }
  if (!sawHost && fwd.authority !== undefined) out.push('host', fwd.authority);
  const client = fwd.clientAddress;
  if (client !== undefined) {
    out.push('x-forwarded-for', xff === undefined ? client : `${xff}, ${client}`);
    const node = isIP(client) === 6 ? `"[${client}]"` : client;
    out.push('forwarded', `${forwarded === undefined ? '' : `${forwarded}, `}for=${node};proto=http`);
  } else {
    if (xff !== undefined) out.push('x-forwarded-for', xff);
    if (forwarded !== undefined) out.push('forwarded', forwarded);
  }
  out.push('via', via === undefined ? VIA : `${via}, ${VIA}`);
  return out;
}

export type HeaderObject = Record<string, string | string[] | undefined>;

/**
 * Fields a message may carry once (Node's list for HTTP/2, which refuses to send a second
 * value). An HTTP/1.1 upstream that repeats one gets its first value relayed to an HTTP/2 caller.
 */
const SINGLE_VALUE: ReadonlySet<string> = new Set([
  'access-control-allow-credentials',
  'access-control-max-age',
  'access-control-request-method',
  'age',
  'authorization',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-md5',
  'content-range',
  'content-type',
  'date',
  'dnt',
  'etag',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'tk',
  'upgrade-insecure-requests',
  'user-agent',
  'x-content-type-options',
]);

/**
 * Shapes response fields for an HTTP/2 caller: a repeated single-value field keeps its first
 * value; with `everyField`, every repeated field but Set-Cookie does (the fallback when Node
 * still refuses the set, so that the caller gets the answer rather than a failure).
 */
export function http2ResponseHeaders(headers: HeaderObject, everyField = false): HeaderObject {
  let out: HeaderObject | undefined;
  for (const name in headers) {
    const value = headers[name];
    if (!Array.isArray(value) || (!SINGLE_VALUE.has(name) && !(everyField && name !== 'set-cookie'))) continue;
    out ??= { ...headers };
    out[name] = value[0];
  }
  return out ?? headers;
}

/** Copies upstream response headers for the caller, minus hop-by-hop fields, plus Via. */
export function downstreamResponseHeaders(headers: HeaderObject): HeaderObject {
  const connection = headers['connection'];
  const extra = connectionTokens(Array.isArray(connection) ? connection.join(',') : connection);
  const out: HeaderObject = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || extra?.has(name) === true) continue;
    out[name] = headers[name];
  }
  const via = out['via'];
  out['via'] = via === undefined ? VIA : `${Array.isArray(via) ? via.join(', ') : via}, ${VIA}`;
  return out;
}

/** Whether a field set has any field. */
export function hasFields(fields: HeaderObject): boolean {
  for (const name in fields) if (Object.hasOwn(fields, name)) return true;
  return false;
}

/** A copy of `fields` without `names`. */
export function withoutFields(fields: HeaderObject, names: readonly string[]): HeaderObject {
  const out: HeaderObject = {};
  for (const name in fields) if (!names.includes(name)) out[name] = fields[name];
  return out;
}
