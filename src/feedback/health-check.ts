/**
 * Active health checks: every endpoint of a service is probed on an interval
 * (an HTTP GET of a path, or a TCP connect); after `unhealthyThreshold`
 * failures in a row it is held out, after `healthyThreshold` successes it may
 * come back, through the outlier detector (which owns the decision). The
 * threshold counting is pure; the checker owns the timers and sockets.
 */
import { request, type RequestOptions } from 'node:http';
import { request as tlsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Random } from '../clock.ts';
import type { HealthCheckConfig } from '../config/types.ts';
import type { PeerTlsOptions } from '../tls/client.ts';

export type { HealthCheckConfig } from '../config/types.ts';

/** Consecutive-result counting for one endpoint; returns the new verdict when it flips. */
export class HealthVerdict {
  private healthy = true;
  private streak = 0;
  private readonly config: HealthCheckConfig;

  constructor(config: HealthCheckConfig) {
    this.config = config;
  }

  record(passed: boolean): boolean | undefined {
    if (passed === this.healthy) {
      this.streak = 0;
      return undefined;
    }
    this.streak++;
    const needed = this.healthy ? this.config.unhealthyThreshold : this.config.healthyThreshold;
    if (this.streak < needed) return undefined;
    this.healthy = passed;
    this.streak = 0;
    return passed;
  }
}

export interface ProbeTarget {
  address: string;
  host: string;
  port: number;
  /**
   * Set when the endpoint is another meshd: the probe goes over mTLS and checks this identity, as
   * every call does (a plain probe would never reach it), naming `service` as a call would.
   */
  tls?: { options(): PeerTlsOptions; readonly service: string } | undefined;
}

/**
 * One probe: resolves true when the endpoint passed. HTTP: a GET of the path answered 2xx/3xx.
 * TCP: a connection (for a meshd endpoint, a completed mTLS handshake with the right identity).
 */
export function probe(target: ProbeTarget, config: HealthCheckConfig): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean): void => resolve(ok);
    if (config.kind === 'tcp') {
      const secure = target.tls;
      const socket: Socket =
        secure === undefined ? connect({ host: target.host, port: target.port }) : tlsConnect({ host: target.host, port: target.port, ...secure.options() });
      socket.setTimeout(config.timeoutMs, () => {
        socket.destroy();
        done(false);
      });
      socket.once(secure === undefined ? 'connect' : 'secureConnect', () => {
        socket.destroy();
        done(true);
      });
      socket.once('error', () => done(false));
      return;
    }
    const options: RequestOptions = {
      host: target.host,
      port: target.port,
      path: config.path,
      method: 'GET',
      agent: false,
      headers: { 'user-agent': 'meshd-health-check' },
    };
    const send = target.tls === undefined ? request : tlsRequest;
    // A meshd endpoint routes by Host: the probe names the service, as a call does.
    if (target.tls !== undefined) Object.assign(options, target.tls.options(), { headers: { 'user-agent': 'meshd-health-check', host: target.tls.service } });
    const req = send(options, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      done(status >= 200 && status < 400);
    });
    req.setTimeout(config.timeoutMs, () => req.destroy(new Error('health check timed out')));
    req.once('error', () => done(false));
    req.end();
  });
}

export class HealthChecker {
  private readonly config: HealthCheckConfig;
  private readonly onVerdict: (address: string, healthy: boolean) => void;
  private readonly random: Random;
  private readonly targets = new Map<string, { target: ProbeTarget; verdict: HealthVerdict; timer: NodeJS.Timeout }>();
  private stopped = false;

  constructor(config: HealthCheckConfig, random: Random, onVerdict: (address: string, healthy: boolean) => void) {
    this.config = config;
    this.random = random;
    this.onVerdict = onVerdict;
  }

  /** Probes exactly these endpoints from now on. */
  setTargets(targets: readonly ProbeTarget[]): void {
    const wanted = new Map(targets.map((t) => [t.address, t]));
    for (const [address, entry] of this.targets) {
      if (wanted.has(address)) continue;
      clearTimeout(entry.timer);
      this.targets.delete(address);
    }
    for (const [address, target] of wanted) {
      const known = this.targets.get(address);
      if (known !== undefined) {
        known.target = target; // its identity may have changed
        continue;
      }
      // A random first delay spreads the probes of many endpoints (and many hosts) apart.
      const entry = {
        target,
        verdict: new HealthVerdict(this.config),
        timer: setTimeout(() => void this.run(address), this.random() * this.config.intervalMs),
      };
      entry.timer.unref();
      this.targets.set(address, entry);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const entry of this.targets.values()) clearTimeout(entry.timer);
    this.targets.clear();
  }

  private async run(address: string): Promise<void> {
    const entry = this.targets.get(address);
    if (entry === undefined || this.stopped) return;
    const passed = await probe(entry.target, this.config);
    // stop() and setTargets() drop the entry: it is gone if either ran during the probe.
    if (this.targets.get(address) !== entry) return;
    const flipped = entry.verdict.record(passed);
    if (flipped !== undefined) this.onVerdict(address, flipped);
    entry.timer = setTimeout(() => void this.run(address), this.config.intervalMs);
    entry.timer.unref();
  }
}
