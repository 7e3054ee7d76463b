/**
 * Header rewriting for a forwarding proxy (RFC 9110 §7.6): connection-specific
 * fields and any field the Connection header names are dropped in both
 * directions; the request gains Via, X-Forwarded-For and Forwarded.
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
  // meshd's own request controls: consumed here, re-set by meshd where they apply.
  'x-meshd-timeout-ms',
  'x-meshd-retryable',
  // Only the inbound listener may assert who the caller is; a client-sent value is a spoof.
  'x-meshd-peer-identity',
]);

const VIA = '1.1 meshd';

/** Field names listed in a Connection header value, lowercased. */
function connectionTokens(value: string | undefined): ReadonlySet<string> | undefined {
  if (value === undefined || value === '' || value === 'keep-alive' || value === 'close') return undefined;
  return new Set(value.toLowerCase().split(',').map((s) => s.trim()).filter((s) => s !== '' && s !== 'close' && s !== 'keep-alive'));
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
