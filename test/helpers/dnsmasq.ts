/**
 * A real DNS server for discovery tests: dnsmasq (Debian's package) on
 * 127.0.0.1 at a free port, authoritative for the `.test` domain (unknown
 * names get NXDOMAIN), with SRV and address records the test sets and
 * changes. SRV records change by restarting it on the same port; address
 * records in its hosts file change on SIGHUP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SrvRecord {
  name: string;
  target: string;
  port: number;
  priority?: number;
  weight?: number;
}

export interface DnsRecords {
  srv?: SrvRecord[];
  /** name → address, served from the hosts file (reloaded on SIGHUP). */
  hosts?: Record<string, string>;
  /** TTL of every record, in seconds. */
  ttl?: number;
}

export interface Dnsmasq {
  readonly port: number;
  /** Replaces every record: a restart for SRV records, a SIGHUP when only the hosts changed. */
  set(records: DnsRecords): Promise<void>;
  stop(): Promise<void>;
  close(): Promise<void>;
}

/** A UDP port nothing listens on now. */
async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

export async function startDnsmasq(records: DnsRecords): Promise<Dnsmasq> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-dnsmasq-'));
  const port = await freeUdpPort();
  let current = records;
  let proc: ChildProcess | undefined;

  const write = (r: DnsRecords): void => {
    const hosts = Object.entries(r.hosts ?? {}).map(([name, address]) => `${address} ${name}`);
    writeFileSync(join(dir, 'hosts'), `${hosts.join('\n')}\n`);
    const srv = (r.srv ?? []).map((s) => `srv-host=${s.name},${s.target},${s.port},${s.priority ?? 0},${s.weight ?? 10}`);
    writeFileSync(
      join(dir, 'dnsmasq.conf'),
      [
        `port=${port}`,
        'listen-address=127.0.0.1',
        'bind-interfaces',
        'no-resolv',
        'no-hosts',
        'local=/test/',
        `local-ttl=${r.ttl ?? 2}`,
        `addn-hosts=${join(dir, 'hosts')}`,
        ...srv,
        '',
      ].join('\n'),
    );
  };
  const launch = async (): Promise<void> => {
    const child = spawn('dnsmasq', [`--conf-file=${join(dir, 'dnsmasq.conf')}`, '-k', '-u', 'root', '--pid-file=', '--log-facility=-'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proc = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dnsmasq did not start: ${output}`)), 5_000);
      child.stderr.on('data', (d: Buffer) => {
        output += d.toString();
        if (/read .*hosts/.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`dnsmasq exited with ${code}: ${output}`));
      });
    });
  };
  const stop = async (): Promise<void> => {
    const child = proc;
    proc = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await exited;
  };

  write(current);
  await launch();
  return {
    port,
    set: async (next) => {
      const srvChanged = JSON.stringify(next.srv ?? []) !== JSON.stringify(current.srv ?? []) || next.ttl !== current.ttl;
      current = next;
      write(next);
      if (srvChanged || proc === undefined) {
        await stop();
        await launch();
      } else proc.kill('SIGHUP');
    },
    stop,
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
