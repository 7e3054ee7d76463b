/**
 * A service this host serves to other hosts: callers arrive over mTLS on the
 * inbound listener, are authorized by identity there, and come here to be
 * forwarded to the local target. Overload is shed the same way as outbound,
 * and a shed response carries `x-meshd-overloaded`, which tells the calling
 * host's meshd to take this endpoint out of rotation for a while.
 */
import type { Balancer } from '../balancer/balancer.ts';
import { Endpoint } from '../balancer/endpoint.ts';
import type { Clock } from '../clock.ts';
import { formatSocketAddress } from '../config/address.ts';
import type { LocalServiceConfig } from '../config/types.ts';
import type { Logger } from '../log.ts';
import { forwardHttp } from '../proxy/http-forwarder.ts';
import { HttpUpstream } from '../proxy/http-upstream.ts';
import type { Admission } from '../stack/admission.ts';
import { Attempts, type AttemptSink } from '../stack/attempt.ts';
import { buildStack } from '../stack/build.ts';
import type { Handler } from '../stack/layer.ts';
import type { DataPathObserver, EdgeRecorder } from '../stack/observer.ts';
import type { ExchangeWitnesses } from '../stack/trace.ts';
import { createAdmission } from './concurrency-control.ts';
import type { DecisionRecorder } from '../feedback/controller.ts';
import { compilePolicy, type Verdict } from '../identity/spiffe.ts';
import { accessLayer, accessRefusal, compileAccess, type AccessCheck, type AccessRecorder } from '../routing/access.ts';
import { RateLimiter, rateLimitLayer, rateLimitRefusal, type RateLimitRecorder } from '../traffic/rate-limiter.ts';
import { MeshError } from '../errors.ts';
import type { Socket } from 'node:net';
import type { FieldReader } from '../stack/exchange.ts';
import { TunnelWitness, type TunnelWitnessDeps } from '../stack/tunnel-witness.ts';

/** The one endpoint of a local service: its target. */
class TargetBalancer implements Balancer {
  readonly algorithm = 'local-target';
  private readonly target: Endpoint;
  constructor(target: Endpoint) {
    this.target = target;
  }
  pick(): Endpoint {
    return this.target;
  }
  setEndpoints(): void {}
}

/** Local targets are on this host: a connect that takes longer than this has failed. */
export const LOCAL_CONNECT_TIMEOUT_MS = 1_000;

export interface LocalDeps {
  readonly observer: DataPathObserver;
  readonly decisions: DecisionRecorder;
  readonly log: Logger;
  readonly clock: Clock;
  /** Publishes the concurrency limit (gauge). */
  concurrencyLimit(service: string, limit: number): void;
  /** Access refusals and rate-limited requests (metrics); none counted when absent. */
  readonly traffic?: AccessRecorder & RateLimitRecorder;
  /** The dependency map (inbound edges: verified caller → local service). */
  readonly edges?: EdgeRecorder;
  /** Traces (inbound spans) and access logs. */
  readonly witnesses?: ExchangeWitnesses;
}

const UNCOUNTED: AccessRecorder & RateLimitRecorder = { authorization: () => {}, rateLimited: () => {} };

/** A local target's attempts report nowhere but its statistics: there is no choice to feed back into. */
const NO_FEEDBACK: AttemptSink = { attemptFinished: () => {} };

export class LocalService {
  readonly config: LocalServiceConfig;
  readonly handler: Handler;
  /** The allow/deny policy, compiled once. */
  readonly authorize: (identity: string) => Verdict;
  private readonly target: Endpoint<HttpUpstream>;
  private readonly admission: Admission | undefined;
  private readonly access: AccessCheck | undefined;
  private readonly limiter: RateLimiter | undefined;
  private readonly traffic: AccessRecorder & RateLimitRecorder;
  private readonly witnessDeps: TunnelWitnessDeps;

  constructor(config: LocalServiceConfig, deps: LocalDeps) {
    this.config = config;
    this.authorize = compilePolicy(config);
    this.access = compileAccess(config.access);
    this.limiter = config.rateLimit === undefined ? undefined : new RateLimiter(config.rateLimit, deps.clock);
    this.traffic = deps.traffic ?? UNCOUNTED;
    this.witnessDeps = { witnesses: deps.witnesses, edges: deps.edges, clock: deps.clock };
    const address = formatSocketAddress(config.target);
    const spec = { address, host: config.target.host, port: config.target.port, zone: undefined, weight: 1, labels: {}, identity: undefined };
    const upstream = new HttpUpstream(
      spec,
      { protocol: config.protocol, maxConnections: 1_024, idleTimeoutMs: 30_000, connectTimeoutMs: LOCAL_CONNECT_TIMEOUT_MS },
      undefined,
    );
    const label = `local:${config.name}`;
    this.target = new Endpoint(spec, upstream, deps.observer.forEndpoint(label, address), deps.clock());
    this.admission = createAdmission(label, config.concurrency, {
      log: deps.log,
      clock: deps.clock,
      decisions: deps.decisions,
      limit: (service, limit) => deps.concurrencyLimit(service, limit),
    });
    const balancer = new TargetBalancer(this.target);
    this.handler = buildStack(
      {
        label,
        recorder: deps.observer.forService(label),
        log: deps.log,
        clock: deps.clock,
        timeoutMs: config.timeoutMs,
        admission: () => this.admission,
        attempts: new Attempts(
          label,
          () => balancer,
          () => Number.POSITIVE_INFINITY,
          deps.clock,
          NO_FEEDBACK,
        ),
        hashKey: undefined,
        markOverload: true,
        ...(deps.edges === undefined ? {} : { edges: deps.edges }),
        ...(deps.witnesses === undefined ? {} : { witnesses: { to: deps.witnesses, kind: 'inbound' as const } }),
        policy: [
          ...(this.access === undefined ? [] : [accessLayer(this.access, label, this.traffic)]),
          ...(this.limiter === undefined ? [] : [rateLimitLayer(this.limiter, label, undefined, this.traffic)]),
        ],
      },
      forwardHttp,
    );
  }

  /**
   * The access rules and rate limit for what does not pass the HTTP stack: a WebSocket handshake
   * (`request`) or a TCP stream (undefined). Returns the refusal, or undefined to go ahead.
   */
  refusal(request: { method: string; target: string } | undefined, caller: string): MeshError | undefined {
    const label = `local:${this.config.name}`;
    return accessRefusal(this.access, request, caller, label, this.traffic) ?? rateLimitRefusal(this.limiter, caller, label, undefined, this.traffic);
  }

  /** The local target, as its endpoint is named in metrics and on the dependency map. */
  get targetAddress(): string {
    return this.target.address;
  }

  /**
   * What the HTTP stack's outer layers do, for a WebSocket tunnel (`handshake` given) or a TCP
   * stream to the target: a span, an edge and an access line, ended when the caller's socket closes.
   */
  witnessTunnel(
    protocol: 'websocket' | 'tcp',
    caller: string,
    socket: Socket,
    handshake: { readonly fields: FieldReader | undefined; readonly method?: string; readonly path?: string },
  ): TunnelWitness {
    const witness = new TunnelWitness(this.witnessDeps, {
      kind: 'inbound',
      protocol,
      service: `local:${this.config.name}`,
      caller,
      verified: true,
      fields: handshake.fields,
      method: handshake.method,
      path: handshake.path,
    });
    socket.once('close', () => witness.end(socket));
    return witness;
  }

  close(): Promise<void> {
    return this.target.upstream.close();
  }
}
