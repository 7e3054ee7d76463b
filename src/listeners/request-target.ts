/**
 * Which service a request is for, and what to send upstream. Local apps call
 * meshd with the service as the Host header ("Host: users") or use it as an
 * HTTP proxy with absolute-form targets ("GET http://users/x"). The port is
 * kept apart: configured services ignore it, Kubernetes mesh mode reads it as
 * the Service port.
 */
import { MeshError } from '../errors.ts';

export interface RequestTarget {
  service: string;
  /** Origin-form path and query. */
  path: string;
  /** Replacement Host for absolute-form requests (RFC 9112 §3.2.2); undefined keeps the caller's. */
  authority: string | undefined;
  /** The port the Host or target names; undefined when it names none. */
  port: number | undefined;
}

const HTTP_SCHEME = /^http:\/\//i;
const HTTPS_SCHEME = /^https:\/\//i;

export function parseRequestTarget(url: string, host: string | undefined): RequestTarget | MeshError {
  if (url.charCodeAt(0) === 47 /* "/" */) {
    if (host === undefined || host === '') return new MeshError('bad_request', 'missing Host header: set it to the service name');
    const service = serviceName(host);
    if (service === undefined) return new MeshError('bad_request', `Host header ${JSON.stringify(host)} is not a service name`);
    return { service, path: url, authority: undefined, port: portOf(host) };
  }
  if (HTTP_SCHEME.test(url)) {
    const rest = url.slice(7);
    let end = rest.length;
    for (let i = 0; i < rest.length; i++) {
      const c = rest.charCodeAt(i);
      if (c === 47 || c === 63 || c === 35) {
        end = i;
        break;
      }
    }
    const authority = rest.slice(0, end);
    if (authority.includes('@')) return new MeshError('bad_request', 'credentials in the request target are not accepted');
    const service = serviceName(authority);
    if (service === undefined) return new MeshError('bad_request', `request target ${JSON.stringify(authority)} does not name a service`);
    const tail = rest.slice(end);
    const path = tail === '' ? '/' : tail.charCodeAt(0) === 47 ? tail : `/${tail}`;
    return { service, path, authority, port: portOf(authority) };
  }
  if (HTTPS_SCHEME.test(url)) {
    return new MeshError('bad_request', 'https:// targets are not proxied: call http://SERVICE and meshd secures the hop itself');
  }
  return new MeshError('bad_request', `unsupported request target ${JSON.stringify(url.slice(0, 64))}`);
}

const NAME = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

/** "Users.:8080" → "users"; undefined when it is not a plausible service name. */
export function serviceName(hostPort: string): string | undefined {
  let host = hostPort;
  if (host.startsWith('[')) return undefined; // an IP literal names no service
  const colon = host.lastIndexOf(':');
  if (colon >= 0) host = host.slice(0, colon);
  host = host.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  return NAME.test(host) ? host : undefined;
}

/** "users:8080" → 8080; undefined without a port, or with one outside 1–65535. */
export function portOf(hostPort: string): number | undefined {
  const colon = hostPort.lastIndexOf(':');
  if (colon < 0 || colon === hostPort.length - 1 || hostPort.endsWith(']')) return undefined;
  let port = 0;
  for (let i = colon + 1; i < hostPort.length; i++) {
    const c = hostPort.charCodeAt(i) - 48;
    if (c < 0 || c > 9 || port > 6553) return undefined;
    port = port * 10 + c;
  }
  return port >= 1 && port <= 65535 ? port : undefined;
}
