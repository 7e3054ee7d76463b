/**
 * The path a route or an access rule judges: the request target's path
 * with percent-encoded bytes decoded (encoded slashes and backslashes too),
 * backslashes read as slashes, repeated slashes merged and dot segments
 * removed. A caller cannot slip past `deny /admin/*` with `/x/../admin`,
 * `//admin` or `/%61dmin/%2e%2e/admin`, because every form a server might
 * read as /admin is judged as /admin. The request goes upstream unchanged.
 */

/** The normalised path of an origin-form request target ("/a/b?q" → "/a/b"). */
export function matchPath(target: string): string {
  const query = target.indexOf('?');
  let path = query === -1 ? target : target.slice(0, query);
  if (path.includes('%')) path = decodePercent(path);
  if (path.includes('\\')) path = path.replaceAll('\\', '/');
  if (!path.includes('//') && !path.includes('/.')) return path.startsWith('/') ? path : `/${path}`;
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  const trailing = path.endsWith('/') || path.endsWith('/.') || path.endsWith('/..');
  return `/${out.join('/')}${trailing && out.length > 0 ? '/' : ''}`;
}

/** Decodes %XX sequences byte by byte (invalid UTF-8 stays as replacement characters; malformed escapes stay as written). */
function decodePercent(path: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 && i + 2 < path.length && /^[0-9A-Fa-f]{2}$/.test(path.slice(i + 1, i + 3))) {
      bytes.push(parseInt(path.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      for (const b of Buffer.from(path[i] ?? '', 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The query parameters of a request target; a name's first value counts (as Gateway API advises). */
export function queryParams(target: string): Map<string, string> {
  const params = new Map<string, string>();
  const query = target.indexOf('?');
  if (query === -1) return params;
  for (const [name, value] of new URLSearchParams(target.slice(query + 1))) if (!params.has(name)) params.set(name, value);
  return params;
}
