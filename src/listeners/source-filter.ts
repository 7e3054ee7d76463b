/**
 * Which callers may connect to a listener that leaves loopback: a list of
 * source ranges (CIDRs), checked at accept, before a byte is read.
 */
import { BlockList } from 'node:net';
import { parseCidr } from '../config/address.ts';

export class SourceFilter {
  private readonly list = new BlockList();
  readonly ranges: readonly string[];

  /** `cidrs` were validated with the config; an unparsable one would have been rejected there. */
  constructor(cidrs: readonly string[]) {
    this.ranges = cidrs;
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (c !== undefined) this.list.addSubnet(c.address, c.prefix, c.family);
    }
  }

  allows(remote: string | undefined): boolean {
    if (remote === undefined) return false;
    // IPv4 callers of a dual-stack socket appear as ::ffff:a.b.c.d.
    if (remote.startsWith('::ffff:') && remote.includes('.')) return this.list.check(remote.slice(7), 'ipv4');
    return this.list.check(remote, remote.includes(':') ? 'ipv6' : 'ipv4');
  }
}

/** A filter for `cidrs`, or undefined (anyone) when none are configured. */
export function sourceFilter(cidrs: readonly string[] | undefined): SourceFilter | undefined {
  return cidrs === undefined ? undefined : new SourceFilter(cidrs);
}
