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
import { MeshError } from '../errors.ts';
import { DEFAULT_CONCURRENCY, GradientLimiter } from '../feedback/concurrency.ts';
import type { Logger } from '../log.ts';
import { forwardHttp } from '../proxy/http-forwarder.ts';
import { OVERLOADED_HEADER } from '../protocol/fields.ts';
import { HttpUpstream } from '../proxy/http-upstream.ts';
import { Admission, admissionLayer } from '../stack/admission.ts';
import { deadlineLayer } from '../stack/deadline.ts';
import type { Layer } from '../stack/layer.ts';
import { compose, type Handler } from '../stack/layer.ts';
import { balanceLayer, observeLayer, respondLayer } from '../stack/layers.ts';
import type { DataPathObserver } from '../stack/observer.ts';
import type { DecisionRecorder } from '../feedback/controller.ts';
import { compilePolicy, type Verdict } from '../tls/identity.ts';

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

/** Marks meshd's own overload answers so the caller's meshd backs off this host. */
const markOverload: Layer = (next) => async (ex) => {
  try {
    await next(ex);
  } catch (err) {
    if (err instanceof MeshError && err.code === 'overloaded' && !ex.res.headersSent) ex.res.setHeader(OVERLOADED_HEADER, '1');
    throw err;
  }
};

/** Local targets are on this host: a connect that takes longer than this has failed. */
export const LOCAL_CONNECT_TIMEOUT_MS = 1_000;

export interface LocalDeps {
  readonly observer: DataPathObserver;
  readonly decisions: DecisionRecorder;
  readonly log: Logger;
  readonly clock: Clock;
}

export class LocalService {
  readonly config: LocalServiceConfig;
  readonly handler: Handler;
  /** The allow/deny policy, compiled once. */
  readonly authorize: (identity: string) => Verdict;
  private readonly target: Endpoint<HttpUpstream>;
  private readonly admission: Admission | undefined;

  constructor(config: LocalServiceConfig, deps: LocalDeps) {
    this.config = config;
    this.authorize = compilePolicy(config);
    const address = formatSocketAddress(config.target);
    const spec = { address, host: config.target.host, port: config.target.port, zone: undefined, weight: 1, labels: {}, identity: undefined };
    const upstream = new HttpUpstream(spec, { protocol: config.protocol, maxConnections: 1_024, idleTimeoutMs: 30_000, connectTimeoutMs: LOCAL_CONNECT_TIMEOUT_MS }, undefined);
    const label = `local:${config.name}`;
    this.target = new Endpoint(spec, upstream, deps.observer.forEndpoint(label, address), deps.clock());
    const c = config.concurrency;
    this.admission = c.adaptive
      ? new Admission(new GradientLimiter({ ...DEFAULT_CONCURRENCY, initialLimit: c.initialLimit, minLimit: c.minLimit, maxLimit: c.maxLimit, tolerance: c.tolerance, windowMs: c.windowMs }), c.queue, deps.clock, {
          limitChanged: (change) => deps.decisions.decision(label, 'limit_change', change.to > change.from ? 'increase' : 'decrease'),
          shed: (reason) => deps.decisions.decision(label, 'shed', reason),
        })
      : undefined;
    const balancer = new TargetBalancer(this.target);
    this.handler = compose(
      [
        observeLayer(deps.observer.forService(label), deps.clock),
        respondLayer(label, deps.log),
        markOverload,
        deadlineLayer(config.timeoutMs, deps.clock),
        admissionLayer(() => this.admission, deps.clock),
        balanceLayer(label, () => balancer, undefined, Number.POSITIVE_INFINITY, deps.clock, () => {}),
      ],
      forwardHttp,
    );
  }

  close(): Promise<void> {
    return this.target.upstream.close();
  }
}
