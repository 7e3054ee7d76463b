/**
 * Gateway API's RequestRedirect and URLRewrite filters: the path a
 * ReplaceFullPath or ReplacePrefixMatch modifier makes, the Location of a
 * redirect, and the layer that rewrites the Host and path sent upstream.
 * The query string is always kept. A path already in its normal form is
 * rewritten as the caller spelled it; any other (percent-encoded, dot
 * segments, repeated slashes) is rewritten from the form the route was
 * chosen on (./match-path.ts), encoded again, so that what goes upstream is
 * what was judged and a decoded "?" or line break cannot change its meaning.
 */
import type { PathModifier, RequestRedirect, UrlRewrite } from '../config/types.ts';
import type { Exchange, RequestHead } from '../stack/exchange.ts';
import type { Layer } from '../stack/layer.ts';
import { matchPath } from './match-path.ts';

/**
 * Replaces the matched `prefix` of `path` (both in normal form) by `replacement`, as Gateway API's
 * table has it: a trailing slash of either is not doubled, and an empty result is "/".
 */
export function replacePrefix(path: string, prefix: string, replacement: string): string {
  const matched = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const rest = path.slice(matched.length);
  const head = replacement.endsWith('/') ? replacement.slice(0, -1) : replacement;
  const out = head + rest;
  return out === '' ? '/' : out;
}

/** Characters a path segment may hold unencoded (RFC 3986 pchar), and "/". */
const PATH_SAFE = /[^A-Za-z0-9\-._~!$&'()*+,;=:@/]/gu;

/** Percent-encodes everything a path may not carry as it is (as UTF-8). */
export function encodePath(path: string): string {
  return path.replace(PATH_SAFE, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return '%EF%BF%BD'; // a lone surrogate: U+FFFD
    }
  });
}

/** The request target after `modifier` ("/a/b?q" keeps "?q"); `prefix` is what the rule's PathPrefix match matched. */
export function modifiedTarget(target: string, modifier: PathModifier, prefix: string): string {
  const at = target.indexOf('?');
  const raw = at === -1 ? target : target.slice(0, at);
  const query = at === -1 ? '' : target.slice(at);
  if (modifier.type === 'ReplaceFullPath') return modifier.value + query;
  const normal = matchPath(raw);
  // Written as the caller spelled it when that is already the normal form; else encoded again.
  const path = normal === raw ? replacePrefix(raw, prefix, modifier.value) : encodePath(replacePrefix(normal, prefix, modifier.value));
  return path + query;
}

/** A Host field split into its name (IPv6 in brackets) and port. */
function splitAuthority(authority: string): { host: string; port: number | undefined } {
  const close = authority.startsWith('[') ? authority.indexOf(']') : -1;
  const colon = authority.indexOf(':', close + 1);
  if (colon === -1) return { host: authority, port: undefined };
  const port = Number(authority.slice(colon + 1));
  return { host: authority.slice(0, colon), port: Number.isInteger(port) && port > 0 && port < 65_536 ? port : undefined };
}

const WELL_KNOWN_PORT = { http: 80, https: 443 } as const;

/**
 * The Location of a redirect. Unset parts come from the request: its Host (name and port) and
 * path; meshd's listener speaks plain HTTP, so the scheme is http unless set. As Gateway API
 * asks, a set scheme without a port means that scheme's port, and a scheme's own port is left out.
 */
export function redirectLocation(redirect: RequestRedirect, head: RequestHead, prefix: string, fallbackHost: string): string {
  const authority = splitAuthority(head.authority ?? head.field('host') ?? fallbackHost);
  const scheme = redirect.scheme ?? 'http';
  const port = redirect.port ?? (redirect.scheme !== undefined ? WELL_KNOWN_PORT[scheme] : authority.port);
  const host = redirect.hostname ?? authority.host;
  const target = redirect.path === undefined ? head.path : modifiedTarget(head.path, redirect.path, prefix);
  const shownPort = port === undefined || port === WELL_KNOWN_PORT[scheme] ? '' : `:${port}`;
  // The caller's own spelling may hold bytes a field value cannot carry.
  return `${scheme}://${host}${shownPort}${target.replace(/[^\x21-\x7e]/gu, (c) => encodePath(c))}`;
}

/** The head with the rewritten path and Host; fields and everything else read through. */
export function rewrittenHead(head: RequestHead, rewrite: UrlRewrite, prefix: string): RequestHead {
  const path = rewrite.path === undefined ? head.path : modifiedTarget(head.path, rewrite.path, prefix);
  const authority = rewrite.hostname ?? head.authority;
  const host = rewrite.hostname;
  return {
    method: head.method,
    path,
    authority,
    hasBody: head.hasBody,
    remoteAddress: head.remoteAddress,
    fields: head.fields,
    field: host === undefined ? (name) => head.field(name) : (name) => (name === 'host' ? host : head.field(name)),
  };
}

/** URLRewrite: the request goes upstream with the rule's Host and path. */
export function urlRewriteLayer(rewrite: UrlRewrite): Layer {
  return (next) => (ex) => {
    ex.head = rewrittenHead(ex.head, rewrite, ex.routePrefix);
    return next(ex);
  };
}

/** RequestRedirect: the rule answers with the redirect itself (no body), forwarding nothing. */
export function redirectHandler(redirect: RequestRedirect, service: string): (ex: Exchange) => Promise<void> {
  return (ex) => {
    const location = redirectLocation(redirect, ex.head, ex.routePrefix, service);
    ex.response.start(redirect.statusCode, { location, 'content-length': '0' });
    ex.response.end();
    return Promise.resolve();
  };
}
