/**
 * Socket addresses as the config writes them: "127.0.0.1:4140", "[::1]:4140",
 * "users.internal:8080". One parser so every listener and endpoint agrees.
 */
import { isIP } from 'node:net';

export interface SocketAddress {
  host: string;
  port: number;
}

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** Parses host:port; returns a reason string when the text is not one. */
export function parseSocketAddress(text: string, opts: { allowPortZero: boolean }): SocketAddress | string {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return 'expected "[ipv6]:port"';
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon <= 0) return 'expected "host:port"';
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return 'write IPv6 addresses in brackets, e.g. "[::1]:4140"';
    if (isIP(host) === 0 && !HOSTNAME.test(host)) return `"${host}" is neither an IP address nor a host name`;
  }
  if (!/^\d{1,5}$/.test(portText)) return `port "${portText}" is not a number`;
  const port = Number(portText);
  const min = opts.allowPortZero ? 0 : 1;
  if (port < min || port > 65535) return `port ${port} is outside ${min}-65535`;
  return { host, port };
}

/** host:port with IPv6 bracketed, the canonical spelling used as an endpoint key. */
export function formatSocketAddress(addr: SocketAddress): string {
  return isIP(addr.host) === 6 ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

/** "10.244.0.0/16" → { address, prefix, family }; undefined when malformed. */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > max) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** True for 127.0.0.0/8 and ::1, where only local processes can connect. */
export function isLoopback(host: string): boolean {
  return host === '::1' || host === 'localhost' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** The allowFrom entry that stands for the pod ranges of the Kubernetes node meshd runs on. */
export const NODE_POD_CIDRS = 'node-pod-cidrs';
