/**
 * A small DNS stub resolver (RFC 1035) for discovery: it asks for A, AAAA
 * and SRV records and keeps what Node's resolver throws away: the TTL of an
 * SRV answer, the addresses a server adds for SRV targets, and the SOA that
 * says how long a negative answer holds (RFC 2308). UDP first, TCP when the
 * answer is truncated; servers tried in order; every query bounded in time.
 */
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect, isIP } from 'node:net';

export const RR = { A: 1, CNAME: 5, SOA: 6, AAAA: 28, SRV: 33 } as const;
export type RecordType = (typeof RR)[keyof typeof RR];

export type DnsRecord =
  | { type: 1 | 28; name: string; ttl: number; address: string }
  | { type: 33; name: string; ttl: number; priority: number; weight: number; port: number; target: string }
  | { type: 5; name: string; ttl: number; target: string }
  | { type: 6; name: string; ttl: number; minimum: number };

export interface DnsAnswer {
  /** 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, … */
  readonly rcode: number;
  readonly answers: readonly DnsRecord[];
  readonly authority: readonly DnsRecord[];
  readonly additional: readonly DnsRecord[];
}

export interface DnsServer {
  readonly host: string;
  readonly port: number;
}

export class DnsError extends Error {
  readonly code = 'dns_failed';
}

/** The name servers of /etc/resolv.conf (127.0.0.1 when it names none). */
export function systemServers(path = '/etc/resolv.conf'): DnsServer[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    /* no resolv.conf: the local resolver */
  }
  const servers = text
    .split('\n')
    .map((line) => /^\s*nameserver\s+(\S+)/.exec(line)?.[1])
    .filter((s): s is string => s !== undefined && isIP(s) !== 0)
    .map((host) => ({ host, port: 53 }));
  return servers.length > 0 ? servers : [{ host: '127.0.0.1', port: 53 }];
}

/** Asks each server in turn until one answers (SERVFAIL and REFUSED count as no answer). */
export async function resolve(name: string, type: RecordType, servers: readonly DnsServer[], timeoutMs: number): Promise<DnsAnswer> {
  let last: unknown;
  for (const server of servers) {
    try {
      const answer = await queryServer(name, type, server, timeoutMs);
      if (answer.rcode === 2 || answer.rcode === 5) {
        last = new DnsError(`${server.host}:${server.port} answered ${answer.rcode === 2 ? 'SERVFAIL' : 'REFUSED'} for ${name}`);
        continue;
      }
      return answer;
    } catch (err) {
      last = err;
    }
  }
  throw last instanceof Error ? last : new DnsError(`no server answered for ${name}`);
}

async function queryServer(name: string, type: RecordType, server: DnsServer, timeoutMs: number): Promise<DnsAnswer> {
  const id = randomInt(0, 65_536);
  const query = encodeQuery(id, name, type);
  const udp = await exchangeUdp(query, id, server, timeoutMs);
  const truncated = (udp.readUInt16BE(2) & 0x0200) !== 0;
  return decodeMessage(truncated ? await exchangeTcp(query, id, server, timeoutMs) : udp);
}

function exchangeUdp(query: Buffer, id: number, server: DnsServer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIP(server.host) === 6 ? 'udp6' : 'udp4');
    const timer = setTimeout(() => done(new DnsError(`${server.host}:${server.port} did not answer within ${timeoutMs} ms`)), timeoutMs);
    const done = (err: Error | undefined, message?: Buffer): void => {
      clearTimeout(timer);
      socket.close();
      if (err !== undefined) reject(err);
      else resolve(message!);
    };
    // Only the answer to this query counts: same id, from the server asked (RFC 5452).
    socket.on('message', (message, from) => {
      if (message.length >= 12 && message.readUInt16BE(0) === id && from.port === server.port) done(undefined, message);
    });
    socket.on('error', (err) => done(err));
    socket.send(query, server.port, server.host);
  });
}

function exchangeTcp(query: Buffer, id: number, server: DnsServer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: server.host, port: server.port });
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(new DnsError(`${server.host}:${server.port} did not answer over TCP within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(query.length);
      socket.write(Buffer.concat([length, query]));
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const size = received.readUInt16BE(0);
      if (received.length < 2 + size) return;
      clearTimeout(timer);
      socket.destroy();
      const message = received.subarray(2, 2 + size);
      if (message.readUInt16BE(0) !== id) reject(new DnsError('a TCP answer for another query'));
      else resolve(message);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      reject(new DnsError(`${server.host}:${server.port} closed the TCP connection`));
    });
  });
}

/** A standard query with recursion desired. */
export function encodeQuery(id: number, name: string, type: RecordType): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4); // QDCOUNT
  const labels = name
    .replace(/\.$/, '')
    .split('.')
    .filter((l) => l !== '');
  const parts: Buffer[] = [header];
  for (const label of labels) {
    const bytes = Buffer.from(label, 'ascii');
    if (bytes.length > 63) throw new DnsError(`label "${label}" is longer than 63 bytes`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  const tail = Buffer.alloc(5);
  tail.writeUInt16BE(type, 1);
  tail.writeUInt16BE(1, 3); // class IN
  parts.push(tail);
  return Buffer.concat(parts);
}

/** Decodes a response; records of types meshd does not use are skipped. */
export function decodeMessage(message: Buffer): DnsAnswer {
  if (message.length < 12) throw new DnsError('a DNS answer shorter than its header');
  const rcode = message.readUInt16BE(2) & 0x000f;
  const counts = [4, 6, 8, 10].map((at) => message.readUInt16BE(at)) as [number, number, number, number];
  let offset = 12;
  for (let i = 0; i < counts[0]; i++) offset = readName(message, offset).next + 4;
  const section = (count: number): DnsRecord[] => {
    const records: DnsRecord[] = [];
    for (let i = 0; i < count; i++) {
      const { name, next } = readName(message, offset);
      if (next + 10 > message.length) throw new DnsError('a DNS record runs past the end of the answer');
      const type = message.readUInt16BE(next);
      const ttl = message.readUInt32BE(next + 4);
      const length = message.readUInt16BE(next + 8);
      const data = next + 10;
      if (data + length > message.length) throw new DnsError('a DNS record runs past the end of the answer');
      offset = data + length;
      if (type === RR.A && length === 4) records.push({ type, name, ttl, address: [...message.subarray(data, data + 4)].join('.') });
      else if (type === RR.AAAA && length === 16) records.push({ type, name, ttl, address: ipv6(message.subarray(data, data + 16)) });
      else if (type === RR.SRV)
        records.push({
          type,
          name,
          ttl,
          priority: message.readUInt16BE(data),
          weight: message.readUInt16BE(data + 2),
          port: message.readUInt16BE(data + 4),
          target: readName(message, data + 6).name,
        });
      else if (type === RR.CNAME) records.push({ type, name, ttl, target: readName(message, data).name });
      else if (type === RR.SOA) {
        const mname = readName(message, data);
        const rname = readName(message, mname.next);
        records.push({ type, name, ttl, minimum: message.readUInt32BE(rname.next + 16) });
      }
    }
    return records;
  };
  return { rcode, answers: section(counts[1]), authority: section(counts[2]), additional: section(counts[3]) };
}

/** A possibly compressed name at `offset`, and where the record continues after it. */
function readName(message: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let at = offset;
  let next: number | undefined;
  for (let step = 0; step < 256; step++) {
    if (at >= message.length) throw new DnsError('a DNS name runs past the end of the answer');
    const length = message[at]!;
    if (length === 0) return { name: labels.join('.'), next: next ?? at + 1 };
    if ((length & 0xc0) === 0xc0) {
      next ??= at + 2;
      at = ((length & 0x3f) << 8) | message[at + 1]!;
      continue;
    }
    labels.push(message.toString('ascii', at + 1, at + 1 + length));
    at += 1 + length;
  }
  throw new DnsError('a DNS name with too many labels or compression pointers');
}

function ipv6(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // The shortest form (RFC 5952): the longest run of zero groups becomes "::".
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLength).join(':')}`;
}
