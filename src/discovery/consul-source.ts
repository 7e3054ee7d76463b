/**
 * Consul catalog discovery: blocking queries on
 * `/v1/health/service/NAME?passing` (only instances whose checks pass), as
 * Consul documents them: `index` from the last `X-Consul-Index`, a `wait`,
 * the index reset when it goes backwards (a snapshot restore, a new leader)
 * and sanity-checked to be positive, an unchanged answer taken as no change,
 * queries spaced by at least a quarter second so a flapping service cannot
 * make meshd storm its agent, and failures retried with exponential back-off
 * and full jitter while the last good set stays. The ACL token is read from
 * its file for every query, so a rotated token is used at once. `stale`
 * lets any server answer, as discovery at scale should.
 */
import { readFile } from 'node:fs/promises';
import { formatSocketAddress, parseSocketAddress } from '../config/address.ts';
import type { ConsulDiscoveryConfig, EndpointSpec } from '../config/types.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import type { Logger } from '../log.ts';
import type { DiscoverySource } from './source.ts';
import { SourceRecord, type UpdateResult } from './source-record.ts';

export interface ConsulSourceDeps {
  readonly log: Logger;
  readonly random: () => number;
  /** Wall-clock milliseconds. */
  readonly now: () => number;
  changed(): void;
  counted(result: UpdateResult): void;
}

/** Queries are at least this far apart, whatever the answers. */
const MIN_SPACING_MS = 250;
const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_MAX_MS = 60_000;

/** One entry of Consul's /v1/health/service answer, as far as meshd reads it. */
interface ConsulEntry {
  Node?: { Node?: string; Address?: string; Datacenter?: string; Meta?: Record<string, string> | null };
  Service?: { ID?: string; Address?: string; Port?: number; Tags?: string[] | null; Meta?: Record<string, string> | null; Weights?: { Passing?: number } };
}

export class ConsulSource implements DiscoverySource {
  readonly name = 'consul';
  private readonly service: string;
  private readonly config: ConsulDiscoveryConfig;
  private readonly deps: ConsulSourceDeps;
  private readonly record: SourceRecord;
  private index = 0;
  private failures = 0;
  private stopped = false;
  private inFlight: AbortController | undefined;
  private wake: (() => void) | undefined;

  constructor(service: string, config: ConsulDiscoveryConfig, acceptEmptyAfterMs: number, deps: ConsulSourceDeps) {
    this.service = service;
    this.config = config;
    this.deps = deps;
    this.record = new SourceRecord(acceptEmptyAfterMs, deps.now, (result) => deps.counted(result));
  }

  get endpoints(): readonly EndpointSpec[] {
    return this.record.endpoints;
  }

  /** Resolves after the first answer (or failure); then keeps watching. */
  async start(): Promise<void> {
    await this.poll();
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.inFlight?.abort();
    this.wake?.();
  }

  status(): unknown {
    return { ...this.record.status(), address: this.config.address, service: this.config.service, index: this.index };
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const pause = this.failures === 0 ? MIN_SPACING_MS : this.deps.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (this.failures - 1));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pause);
        timer.unref();
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (this.isStopped()) return; // stop() may have run during the pause
      await this.poll();
    }
  }

  private isStopped(): boolean {
    return this.stopped;
  }

  /** One blocking query. */
  private async poll(): Promise<void> {
    const controller = new AbortController();
    this.inFlight = controller;
    // Consul adds up to wait/16 of jitter to a blocking query; a little more is the agent's fault.
    const timeout = setTimeout(() => controller.abort(new Error('no answer in time')), this.config.waitMs + this.config.waitMs / 16 + 5_000);
    try {
      const response = await fetch(await this.url(), { headers: await this.headers(), signal: controller.signal });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`Consul answered ${response.status}: ${text.slice(0, 200).trim()}`);
      let index = Number(response.headers.get('x-consul-index'));
      // An index that is not a positive number would make the next query return at once, forever.
      if (!Number.isSafeInteger(index) || index < 1) index = 1;
      // Going backwards (a restored snapshot, another leader): start over with a full answer.
      const reset = index < this.index;
      const entries = JSON.parse(text) as unknown;
      if (!Array.isArray(entries)) throw new Error('Consul answered something other than a list of service instances');
      this.index = reset ? 0 : index;
      this.failures = 0;
      if (this.record.offer(this.toEndpoints(entries as ConsulEntry[]))) {
        this.deps.log.info(
          { service: this.service, source: 'consul', consulService: this.config.service, endpoints: this.record.endpoints.length, index },
          'Consul discovery changed the endpoints',
        );
        this.deps.changed();
      }
    } catch (err) {
      if (this.stopped) return;
      const reason = (err as Error).message;
      this.failures++;
      this.record.fail(reason);
      this.deps.log.warn(
        { service: this.service, source: 'consul', reason, keptEndpoints: this.record.endpoints.length, failures: this.failures },
        'Consul discovery failed; keeping the last good endpoints',
      );
    } finally {
      clearTimeout(timeout);
      this.inFlight = undefined;
    }
  }

  private async url(): Promise<string> {
    const { address, service, tag, datacenter, waitMs } = this.config;
    const url = new URL(`/v1/health/service/${encodeURIComponent(service)}`, address);
    url.searchParams.set('passing', 'true');
    url.searchParams.set('stale', '');
    url.searchParams.set('index', String(this.index));
    url.searchParams.set('wait', `${Math.max(1, Math.round(waitMs / 1000))}s`);
    if (tag !== undefined) url.searchParams.set('tag', tag);
    if (datacenter !== undefined) url.searchParams.set('dc', datacenter);
    return Promise.resolve(url.toString());
  }

  private async headers(): Promise<Record<string, string>> {
    if (this.config.tokenFile === undefined) return {};
    const token = (await readFile(this.config.tokenFile, 'utf8')).trim();
    return { 'x-consul-token': token };
  }

  /** Consul's entries as endpoints: the service's address (or its node's), port, weight, zone, metadata. */
  private toEndpoints(entries: readonly ConsulEntry[]): EndpointSpec[] {
    const out = new Map<string, EndpointSpec>();
    for (const entry of entries) {
      const host = nonEmpty(entry.Service?.Address) ?? nonEmpty(entry.Node?.Address);
      const port = entry.Service?.Port;
      if (host === undefined || port === undefined) continue;
      const parsed = parseSocketAddress(formatSocketAddress({ host, port }), { allowPortZero: false });
      if (typeof parsed === 'string') continue; // Consul holds a name meshd cannot dial: skipped, not fatal
      const meta = { ...(entry.Node?.Meta ?? {}), ...(entry.Service?.Meta ?? {}) };
      const identity = meta['meshd-identity'];
      const spec: EndpointSpec = {
        address: formatSocketAddress(parsed),
        host: parsed.host,
        port: parsed.port,
        zone: nonEmpty(meta['zone']) ?? nonEmpty(meta['topology.kubernetes.io/zone']),
        weight: Math.max(1, entry.Service?.Weights?.Passing ?? 1),
        labels: { ...meta, ...(entry.Node?.Node === undefined ? {} : { node: entry.Node.Node }) },
        identity: identity !== undefined && typeof parseSpiffeId(identity) !== 'string' ? identity : undefined,
      };
      out.set(spec.address, spec);
    }
    return [...out.values()];
  }
}

function nonEmpty(value: string | undefined | null): string | undefined {
  return value === undefined || value === null || value === '' ? undefined : value;
}
