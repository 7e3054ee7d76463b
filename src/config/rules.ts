/**
 * What the schema cannot check: rules that look across keys, or at values
 * only meaningful once normalised. Each rule reports problems by path and
 * never throws, so one load names every problem at once. CONFIG_RULES runs
 * them in a fixed order, which is the order the problems are listed in.
 */
import { identityPatternProblem } from '../identity/spiffe.ts';
import { formatSocketAddress, isLoopback, type SocketAddress } from './address.ts';
import type { RawConfig, RawService } from './raw.ts';
import type { EndpointSpec, MeshConfig, ServiceConfig } from './types.ts';
import { formatPath, type PathSegment } from './validate.ts';
import { accessRulesAreValid, canaryIsValid, checkAccessRules, faultsAreValid, routesAreValid } from './traffic-rules.ts';

export type Report = (path: PathSegment[], message: string) => void;

/** The config as written and as normalised; a rule reads whichever states its concern plainly. */
export interface ConfigUnderCheck {
  readonly raw: RawConfig;
  readonly config: MeshConfig;
}

/** One entry of `services`, as written and as normalised. */
export interface ServiceUnderCheck {
  readonly name: string;
  readonly raw: RawService;
  readonly config: ServiceConfig;
}

export type ConfigRule = (subject: ConfigUnderCheck, report: Report) => void;
export type ServiceRule = (service: ServiceUnderCheck, report: Report, whole: ConfigUnderCheck) => void;

const MIN_HEALTH_CHECK_INTERVAL_MS = 100;

/** Reports every endpoint that repeats an earlier one's address; shared with endpoints files. */
export function reportDuplicateEndpoints(endpoints: readonly EndpointSpec[], path: readonly PathSegment[], report: Report): void {
  const seen = new Map<string, number>();
  endpoints.forEach((e, i) => {
    const first = seen.get(e.address);
    if (first !== undefined) report([...path, i, 'address'], `duplicate of ${formatPath([...path, first])} (${e.address})`);
    seen.set(e.address, i);
  });
}

// Rules for one service, run for each service in turn.

/** An address is its endpoint's key within the service, so a repeat would collide rather than add weight. */
export const endpointAddressesAreDistinct: ServiceRule = ({ name, config }, report) => {
  reportDuplicateEndpoints(config.endpoints, ['services', name, 'endpoints'], report);
};

/** Consistent hashing has nothing to hash without a request attribute to key on. */
export const ringHashNeedsHashOn: ServiceRule = ({ name, config }, report) => {
  if (config.balancer.algorithm === 'ring-hash' && config.balancer.hashOn === undefined) {
    report(['services', name, 'balancer', 'hashOn'], 'ring-hash needs hashOn: { header: NAME } or { cookie: NAME }');
  }
};

/** hashOn on another algorithm would be silently ignored; say so instead. */
export const hashOnNeedsRingHash: ServiceRule = ({ name, config }, report) => {
  if (config.balancer.algorithm !== 'ring-hash' && config.balancer.hashOn !== undefined) {
    report(['services', name, 'balancer', 'hashOn'], 'only used by algorithm: ring-hash');
  }
};

/** The EWMA decays by elapsed time over this constant; at 0 it would forget every sample at once. */
export const balancerDecayIsPositive: ServiceRule = ({ name, config }, report) => {
  if (config.balancer.decayMs === 0) report(['services', name, 'balancer', 'decay'], 'must be greater than 0s');
};

/** Off loopback, a service port is a relay for anyone who can reach it, with this host's identity. */
export const serviceTcpOffLoopbackNeedsAllowFrom: ServiceRule = ({ name, raw, config }, report) => {
  if (config.tcp !== undefined && config.tcp.allowFrom === undefined && !isLoopback(config.tcp.listen.host)) {
    report(['services', name, 'tcp', 'listen'], `${raw.tcp?.listen} is reachable from other hosts: set services.${name}.tcp.allowFrom to the callers' ranges`);
  }
};

/** A zero deadline would time out every request at once. */
export const serviceTimeoutIsPositive: ServiceRule = ({ name, config }, report) => {
  if (config.timeoutMs === 0) report(['services', name, 'timeout'], 'must be greater than 0s');
};

/** A check is either an HTTP request or a TCP connect; both or neither leaves it undefined. */
export const healthCheckHasOneKind: ServiceRule = ({ name, raw }, report) => {
  const hc = raw.healthCheck;
  if (hc !== undefined && (hc.http === undefined) === (hc.tcp !== true)) {
    report(['services', name, 'healthCheck'], 'set exactly one of http: { path: /… } or tcp: true');
  }
};

/** Checks more often than this add load on the endpoints without telling more about them. */
export const healthCheckIntervalIsAtLeast100ms: ServiceRule = ({ name, config }, report) => {
  if (config.healthCheck !== undefined && config.healthCheck.intervalMs < MIN_HEALTH_CHECK_INTERVAL_MS) {
    report(['services', name, 'healthCheck', 'interval'], 'must be at least 100ms');
  }
};

/** A failing check ejects through the outlier detector; with it off, checks would change nothing. */
export const healthCheckNeedsOutlier: ServiceRule = ({ name, config }, report) => {
  if (config.healthCheck !== undefined && !config.outlier.enabled) {
    report(['services', name, 'healthCheck'], 'health checks act through the outlier detector; do not disable outlier');
  }
};

/** The adaptive limit moves between minLimit and maxLimit; crossed bounds leave it nowhere. */
export const concurrencyMinLimitIsWithinMax: ServiceRule = ({ name, config }, report) => {
  if (config.concurrency.minLimit > config.concurrency.maxLimit) report(['services', name, 'concurrency', 'minLimit'], 'must not exceed maxLimit');
};

/** The limit starts at initialLimit and moves between the bounds; a start outside them contradicts them. */
export const concurrencyInitialLimitIsWithinBounds: ServiceRule = ({ name, raw, config }, report) => {
  const initial = raw.concurrency?.initialLimit;
  const { minLimit, maxLimit } = config.concurrency;
  if (initial !== undefined && (initial < minLimit || initial > maxLimit)) {
    report(['services', name, 'concurrency', 'initialLimit'], 'must lie between minLimit and maxLimit');
  }
};

/** The rate and latency rules judge samples in this window; an empty one never holds any. */
export const outlierWindowIsPositive: ServiceRule = ({ name, config }, report) => {
  if (config.outlier.windowMs === 0) report(['services', name, 'outlier', 'window'], 'must be greater than 0s');
};

/** The retry budget is a share of the requests in its window; an empty window has none to share. */
export const retryBudgetWindowIsPositive: ServiceRule = ({ name, config }, report) => {
  if (config.retries.budget.windowMs === 0) report(['services', name, 'retries', 'budget', 'window'], 'must be greater than 0s');
};

/** Backoff grows from base and is capped at max; a base above the cap contradicts it. */
export const retryBackoffBaseIsWithinMax: ServiceRule = ({ name, config }, report) => {
  if (config.retries.backoffBaseMs > config.retries.backoffMaxMs) report(['services', name, 'retries', 'backoff', 'base'], 'must not exceed backoff.max');
};

/** Each worker binds a service port itself, so port 0 would give every worker a different one. */
export const serviceTcpPortZeroNeedsOneWorker: ServiceRule = ({ name, config }, report, { config: whole }) => {
  if (config.tcp !== undefined && config.tcp.listen.port === 0 && whole.workers !== 1) {
    report(['services', name, 'tcp', 'listen'], 'port 0 (any free port) cannot be shared by several workers: give a fixed port or set workers: 1');
  }
};

/** Two listeners cannot bind one address; name the latest listener before this one that holds it. */
export const serviceTcpListenAddressIsFree: ServiceRule = ({ name, config }, report, { config: whole }) => {
  if (config.tcp === undefined || config.tcp.listen.port === 0) return;
  const address = formatSocketAddress(config.tcp.listen);
  const owner = listenersBefore(name, whole).findLast((l) => l.address === address);
  if (owner !== undefined) report(['services', name, 'tcp', 'listen'], `same address as ${owner.key} (${address})`);
};

/** The admin, outbound and metrics listeners, then every fixed-port service listener, up to (not including) `service`. */
function listenersBefore(service: string, config: MeshConfig): { key: string; address: string }[] {
  const listeners = [
    { key: 'admin.listen', address: formatSocketAddress(config.admin.listen) },
    { key: 'outbound.listen', address: formatSocketAddress(config.outbound.listen) },
  ];
  if (config.metrics !== undefined && config.metrics.listen.port !== 0)
    listeners.push({ key: 'metrics.listen', address: formatSocketAddress(config.metrics.listen) });
  for (const [name, svc] of config.services) {
    if (name === service) break;
    if (svc.tcp !== undefined && svc.tcp.listen.port !== 0)
      listeners.push({ key: `services.${name}.tcp.listen`, address: formatSocketAddress(svc.tcp.listen) });
  }
  return listeners;
}

/** Runs service rules over every service in order, all rules for one service before the next. */
/** An A/AAAA answer carries no port: the endpoints need one from the config. */
export const dnsAddressRecordsNeedPort: ServiceRule = ({ name, config }, report) => {
  const dns = config.discovery.dns;
  if (dns !== undefined && dns.type !== 'SRV' && dns.port === undefined) {
    report(['services', name, 'discovery', 'dns', 'port'], `${dns.type} records carry no port: set the endpoints' port`);
  }
};

/** TTL bounds that cross would leave no refresh interval to choose. */
export const dnsTtlBoundsAreOrdered: ServiceRule = ({ name, config }, report) => {
  const dns = config.discovery.dns;
  if (dns !== undefined && dns.minTtlMs > dns.maxTtlMs) report(['services', name, 'discovery', 'dns', 'minTtl'], 'must not be greater than maxTtl');
  if (dns !== undefined && dns.minTtlMs === 0)
    report(['services', name, 'discovery', 'dns', 'minTtl'], 'must be greater than 0s (a zero TTL would query without pause)');
};

export function forEachService(...rules: ServiceRule[]): ConfigRule {
  return (whole, report) => {
    for (const [name, config] of whole.config.services) {
      const service = { name, raw: whole.raw.services?.[name] ?? {}, config };
      for (const rule of rules) rule(service, report, whole);
    }
  };
}

// Rules for the whole config.

/** A "**" inside a pattern would match within one segment only, quietly narrowing an allow or a deny. */
export const localIdentityPatternsAreValid: ConfigRule = ({ config }, report) => {
  for (const [name, local] of config.local) {
    for (const list of ['allow', 'deny'] as const) {
      local[list].forEach((pattern, i) => {
        const problem = identityPatternProblem(pattern);
        if (problem !== undefined) report(['local', name, list, i], problem);
      });
    }
    checkAccessRules(local.access, ['local', name, 'access'], report);
  }
};

/** An identity can only be verified over mTLS, which needs this host's own certificate. */
export const endpointIdentityNeedsTls: ConfigRule = ({ config }, report) => {
  if (config.tls !== undefined) return;
  for (const [name, svc] of config.services) {
    svc.endpoints.forEach((e, i) => {
      if (e.identity !== undefined)
        report(['services', name, 'endpoints', i, 'identity'], 'an endpoint with an identity is reached over mTLS: configure tls (cert, key, ca)');
    });
  }
};

/** The inbound listener authenticates every caller by certificate, so it needs one of its own. */
export const inboundNeedsTls: ConfigRule = ({ config }, report) => {
  if (config.inbound !== undefined && config.tls === undefined) report(['inbound'], 'the inbound listener accepts mTLS only: configure tls (cert, key, ca)');
};

/** Without the inbound listener, local services would be configured but unreachable. */
export const localServicesNeedInbound: ConfigRule = ({ config }, report) => {
  if (config.local.size > 0 && config.inbound === undefined) report(['local'], 'local services are reached through the inbound listener: configure inbound');
};

/** Two listeners cannot bind one address (port 0 picks a free port for each). */
export const adminListenDiffersFromOutbound: ConfigRule = ({ config }, report) => {
  const { admin, outbound } = config;
  if (admin.listen.port !== 0 && admin.listen.port === outbound.listen.port && admin.listen.host === outbound.listen.host) {
    report(['admin', 'listen'], `same address as outbound.listen (${formatSocketAddress(admin.listen)})`);
  }
};

/** Off loopback, the outbound listener would be an open proxy for other hosts without a source list. */
export const outboundOffLoopbackNeedsAllowFrom: ConfigRule = ({ config }, report) => {
  if (!isLoopback(config.outbound.listen.host) && config.outbound.allowFrom === undefined) {
    report(
      ['outbound', 'listen'],
      `${formatSocketAddress(config.outbound.listen)} is reachable from other hosts: set outbound.allowFrom to the callers' ranges (e.g. the node's pod CIDR)`,
    );
  }
};

/** Off loopback, the scrape listener answers whoever can reach the host unless it names its callers. */
export const metricsOffLoopbackNeedsAllowFrom: ConfigRule = ({ config }, report) => {
  const metrics = config.metrics;
  if (metrics !== undefined && !isLoopback(metrics.listen.host) && metrics.allowFrom === undefined) {
    report(
      ['metrics', 'listen'],
      `${formatSocketAddress(metrics.listen)} is reachable from other hosts: set metrics.allowFrom to your Prometheus servers' ranges`,
    );
  }
};

/** The scrape listener cannot share the admin, outbound or inbound address. */
export const metricsListenIsFree: ConfigRule = ({ config }, report) => {
  const metrics = config.metrics;
  if (metrics === undefined || metrics.listen.port === 0) return;
  const address = formatSocketAddress(metrics.listen);
  const others: [string, SocketAddress | undefined][] = [
    ['admin.listen', config.admin.listen],
    ['outbound.listen', config.outbound.listen],
    ['inbound.listen', config.inbound?.listen],
  ];
  const taken = others.find(([, other]) => other !== undefined && formatSocketAddress(other) === address);
  if (taken !== undefined) report(['metrics', 'listen'], `same address as ${taken[0]} (${address})`);
};

/**
 * Kubernetes mesh mode carries pods' calls between nodes' meshds over mTLS, on the inbound port every
 * node shares; its Services are made on a pod's first call in the one process that serves it.
 */
export const kubernetesMeshNeedsInboundTlsAndOneWorker: ConfigRule = ({ config }, report) => {
  const mesh = config.kubernetes.mesh;
  if (mesh === undefined) return;
  if (config.tls === undefined) report(['kubernetes', 'mesh'], "mesh mode reaches other nodes' meshds over mTLS: configure tls (each node's own certificate)");
  if (config.inbound === undefined) report(['kubernetes', 'mesh'], "mesh mode delivers other nodes' calls to this node's pods: configure inbound");
  else if (config.inbound.listen.port !== mesh.inboundPort) {
    report(
      ['kubernetes', 'mesh', 'inboundPort'],
      `every node's meshd is reached on ${mesh.inboundPort}, but inbound.listen is on port ${config.inbound.listen.port}`,
    );
  }
  if (config.workers !== 1) report(['workers'], 'mesh mode runs in one process per node for now: set workers: 1');
  mesh.authorization.forEach((policy, service) => {
    for (const list of ['allow', 'deny'] as const) {
      policy[list].forEach((pattern, i) => {
        const problem = identityPatternProblem(pattern);
        if (problem !== undefined) report(['kubernetes', 'mesh', 'authorization', service, list, i], problem);
      });
    }
  });
};

/** Every rule, in the order its problems are listed: per service first, then across the config. */
export const CONFIG_RULES: readonly ConfigRule[] = [
  forEachService(
    endpointAddressesAreDistinct,
    ringHashNeedsHashOn,
    hashOnNeedsRingHash,
    balancerDecayIsPositive,
    serviceTcpOffLoopbackNeedsAllowFrom,
    serviceTimeoutIsPositive,
    healthCheckHasOneKind,
    healthCheckIntervalIsAtLeast100ms,
    healthCheckNeedsOutlier,
    concurrencyMinLimitIsWithinMax,
    concurrencyInitialLimitIsWithinBounds,
    outlierWindowIsPositive,
    retryBudgetWindowIsPositive,
    retryBackoffBaseIsWithinMax,
    dnsAddressRecordsNeedPort,
    dnsTtlBoundsAreOrdered,
    routesAreValid,
    accessRulesAreValid,
    faultsAreValid,
    canaryIsValid,
  ),
  localIdentityPatternsAreValid,
  endpointIdentityNeedsTls,
  inboundNeedsTls,
  localServicesNeedInbound,
  adminListenDiffersFromOutbound,
  outboundOffLoopbackNeedsAllowFrom,
  metricsOffLoopbackNeedsAllowFrom,
  metricsListenIsFree,
  kubernetesMeshNeedsInboundTlsAndOneWorker,
  // Binding checks come last, after every listener's own rules.
  forEachService(serviceTcpPortZeroNeedsOneWorker, serviceTcpListenAddressIsFree),
];

/** Runs CONFIG_RULES; reports nothing for a config meshd can run. */
export function checkConfig(subject: ConfigUnderCheck, report: Report): void {
  for (const rule of CONFIG_RULES) rule(subject, report);
}
