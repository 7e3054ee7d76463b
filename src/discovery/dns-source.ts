/**
 * DNS discovery: a service's endpoints from A/AAAA records (with the port
 * from the config) or SRV records (port and weight from the record, the
 * lowest priority that has targets, addresses from the answer's additional
 * section or asked for). This serves Consul's DNS interface and Kubernetes
 * headless services too. The answer is asked again when its TTL runs out,
 * clamped to [minTtl, maxTtl] and spread by ±10 % so that a fleet does not
 * ask in step; a negative answer holds for its SOA minimum (RFC 2308), at
 * most negativeTtl; a failure is retried sooner, backing off, while the last
 * good list stays.
 */
import type { DnsDiscoveryConfig, EndpointSpec } from '../config/types.ts';
import { formatSocketAddress } from '../config/address.ts';
import type { Logger } from '../log.ts';
import { resolve, RR, systemServers, type DnsAnswer, type DnsRecord, type DnsServer } from './dns-client.ts';
import type { DiscoverySource } from './source.ts';
import { SourceRecord, type UpdateResult } from './source-record.ts';

export interface DnsSourceDeps {
  readonly log: Logger;
  readonly random: () => number;
  /** Wall-clock milliseconds. */
  readonly now: () => number;
  changed(): void;
  counted(result: UpdateResult, reason?: string): void;
}

/** A lookup's endpoints and how long the answer may be believed. */
interface Lookup {
  readonly endpoints: EndpointSpec[];
  readonly ttlMs: number;
}

export class DnsSource implements DiscoverySource {
  readonly name = 'dns';
  private readonly service: string;
  private readonly config: DnsDiscoveryConfig;
  private readonly deps: DnsSourceDeps;
  private readonly record: SourceRecord;
  private readonly servers: readonly DnsServer[];
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private failures = 0;
  private nextRefreshAt: number | undefined;

  constructor(service: string, config: DnsDiscoveryConfig, acceptEmptyAfterMs: number, deps: DnsSourceDeps) {
    this.service = service;
    this.config = config;
    this.deps = deps;
    this.servers = config.servers.length > 0 ? config.servers : systemServers();
    this.record = new SourceRecord(acceptEmptyAfterMs, deps.now, (result) => deps.counted(result));
  }

  get endpoints(): readonly EndpointSpec[] {
    return this.record.endpoints;
  }

  async start(): Promise<void> {
    await this.refresh();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  status(): unknown {
    return {
      ...this.record.status(),
      name: this.config.name,
      type: this.config.type,
      servers: this.servers.map(formatSocketAddress),
      nextRefreshAt: this.nextRefreshAt === undefined ? undefined : new Date(this.nextRefreshAt).toISOString(),
    };
  }

  private async refresh(): Promise<void> {
    if (this.stopped) return;
    let waitMs: number;
    try {
      const found = await this.lookup();
      if (this.isStopped()) return; // stop() may have run during the lookup
      this.failures = 0;
      if (this.record.offer(found.endpoints)) {
        this.deps.log.info(
          { service: this.service, source: 'dns', name: this.config.name, endpoints: found.endpoints.length },
          'DNS discovery changed the endpoints',
        );
        this.deps.changed();
      }
      waitMs = clamp(found.ttlMs, this.config.minTtlMs, this.config.maxTtlMs);
    } catch (err) {
      if (this.isStopped()) return;
      const reason = (err as Error).message;
      this.record.fail(reason);
      this.failures++;
      this.deps.log.warn(
        { service: this.service, source: 'dns', name: this.config.name, reason, keptEndpoints: this.record.endpoints.length },
        'DNS discovery failed; keeping the last good endpoints',
      );
      // Sooner than a TTL, backing off: 1, 2, 4 … × minTtl, at most maxTtl.
      waitMs = clamp(this.config.minTtlMs * 2 ** Math.min(this.failures - 1, 10), this.config.minTtlMs, this.config.maxTtlMs);
    }
    const jittered = waitMs * (0.9 + 0.2 * this.deps.random());
    this.nextRefreshAt = this.deps.now() + jittered;
    this.timer = setTimeout(() => void this.refresh(), jittered);
    this.timer.unref();
  }

  private isStopped(): boolean {
    return this.stopped;
  }

  private async lookup(): Promise<Lookup> {
    const { type, name } = this.config;
    if (type === 'SRV') return this.lookupSrv(name);
    const types = type === 'A' ? [RR.A] : type === 'AAAA' ? [RR.AAAA] : [RR.A, RR.AAAA];
    const answers = await Promise.all(types.map((t) => this.ask(name, t)));
    const port = this.config.port ?? 0;
    const records = answers.flatMap((a) => addresses(a.answers));
    return { endpoints: records.map((r) => endpoint(r.address, port, 1)), ttlMs: ttlOf(answers, records, this.config.negativeTtlMs) };
  }

  private async lookupSrv(name: string): Promise<Lookup> {
    const answer = await this.ask(name, RR.SRV);
    const srv = answer.answers.filter((r): r is Extract<DnsRecord, { type: 33 }> => r.type === RR.SRV && r.target !== '');
    if (srv.length === 0) return { endpoints: [], ttlMs: ttlOf([answer], [], this.config.negativeTtlMs) };
    // The lowest priority is used; the others are fallbacks (RFC 2782) for when it has no address.
    const used: DnsRecord[] = [];
    for (const priority of [...new Set(srv.map((r) => r.priority))].sort((a, b) => a - b)) {
      const group = srv.filter((r) => r.priority === priority);
      const endpoints: EndpointSpec[] = [];
      for (const r of group) {
        let targets = addresses(answer.additional).filter((a) => sameName(a.name, r.target));
        if (targets.length === 0) {
          const asked = await Promise.all([this.ask(r.target, RR.A), this.ask(r.target, RR.AAAA)]);
          targets = asked.flatMap((a) => addresses(a.answers));
        }
        used.push(r, ...targets);
        // SRV weight 0 means "very rarely"; meshd's smallest weight is 1.
        for (const t of targets) endpoints.push(endpoint(t.address, r.port, Math.max(1, r.weight)));
      }
      if (endpoints.length > 0) return { endpoints: dedupe(endpoints), ttlMs: Math.min(...used.map((u) => u.ttl)) * 1000 };
    }
    return { endpoints: [], ttlMs: Math.min(...srv.map((r) => r.ttl)) * 1000 };
  }

  private ask(name: string, type: (typeof RR)[keyof typeof RR]): Promise<DnsAnswer> {
    return resolve(name, type, this.servers, this.config.timeoutMs);
  }
}

function addresses(records: readonly DnsRecord[]): Extract<DnsRecord, { type: 1 | 28 }>[] {
  return records.filter((r): r is Extract<DnsRecord, { type: 1 | 28 }> => r.type === RR.A || r.type === RR.AAAA);
}

/**
 * How long the answers hold: the smallest TTL of the records used; for an answer without
 * records (NXDOMAIN or no data), the SOA's negative TTL, at most `negativeTtlMs`.
 */
function ttlOf(answers: readonly DnsAnswer[], used: readonly DnsRecord[], negativeTtlMs: number): number {
  if (used.length > 0) return Math.min(...used.map((r) => r.ttl)) * 1000;
  const soa = answers.flatMap((a) => a.authority).find((r) => r.type === RR.SOA);
  return soa === undefined ? negativeTtlMs : Math.min(negativeTtlMs, Math.min(soa.ttl, soa.minimum) * 1000);
}

function endpoint(host: string, port: number, weight: number): EndpointSpec {
  return { address: formatSocketAddress({ host, port }), host, port, zone: undefined, weight, labels: {}, identity: undefined };
}

function dedupe(endpoints: EndpointSpec[]): EndpointSpec[] {
  const seen = new Map<string, EndpointSpec>();
  for (const e of endpoints) if (!seen.has(e.address)) seen.set(e.address, e);
  return [...seen.values()];
}

function sameName(a: string, b: string): boolean {
  return a.toLowerCase().replace(/\.$/, '') === b.toLowerCase().replace(/\.$/, '');
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
