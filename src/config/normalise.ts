/**
 * Builds a MeshConfig from a document the schema has accepted: units become
 * numbers, relative paths are resolved, absent keys take their value from
 * DEFAULTS. It judges nothing; ./rules.ts does, on what this returns.
 */
import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { formatSocketAddress, parseSocketAddress, type SocketAddress } from './address.ts';
import { DEFAULTS } from './defaults.ts';
import type { RawBalancer, RawConcurrency, RawConfig, RawDiscovery, RawEndpoint, RawKubernetesMesh, RawLocalService, RawOutlier, RawService } from './raw.ts';
import type {
  KubernetesMeshConfig,
  BalancerConfig,
  ConcurrencySettings,
  DiscoveryConfig,
  EndpointSpec,
  LocalServiceConfig,
  MeshConfig,
  OutlierSettings,
  ServiceConfig,
} from './types.ts';
import { parseDuration, parseSize } from './units.ts';
import { normaliseAccess, normaliseCanary, normaliseFault, normaliseRateLimit, normaliseRoutes } from './normalise-traffic.ts';

// The schema has already checked every format, so these parses cannot fail.
const ms = (text: string | undefined, fallbackMs: number): number => (text === undefined ? fallbackMs : (parseDuration(text) as number));
const bytes = (text: string | undefined, fallbackBytes: number): number => (text === undefined ? fallbackBytes : (parseSize(text) as number));
const listenAddress = (text: string): SocketAddress => parseSocketAddress(text, { allowPortZero: true }) as SocketAddress;
const endpointAddress = (text: string): SocketAddress => parseSocketAddress(text, { allowPortZero: false }) as SocketAddress;

/** The whole config; `baseDir` resolves the relative file paths in it. */
export function normaliseConfig(raw: RawConfig, source: string, baseDir: string): MeshConfig {
  const d = DEFAULTS;
  return {
    source,
    node: { name: raw.node?.name ?? hostname(), zone: raw.node?.zone },
    log: {
      level: raw.log?.level ?? d.log.level,
      access: { enabled: raw.log?.access?.enabled ?? d.log.access.enabled, sampleRatio: raw.log?.access?.sampleRatio ?? d.log.access.sampleRatio },
    },
    tracing: {
      enabled: raw.tracing?.enabled ?? d.tracing.enabled,
      sampleRatio: raw.tracing?.sampleRatio,
      endpoint: raw.tracing?.endpoint,
      headers: raw.tracing?.headers,
    },
    admin: {
      listen: listenAddress(raw.admin?.listen ?? d.admin.listen),
      maxConnections: raw.admin?.maxConnections ?? d.admin.maxConnections,
      allowHosts: (raw.admin?.allowHosts ?? d.admin.allowHosts).map((h) => h.toLowerCase()),
      allowChangesFrom: raw.admin?.allowChangesFrom,
    },
    metrics: raw.metrics === undefined ? undefined : { listen: listenAddress(raw.metrics.listen), allowFrom: raw.metrics.allowFrom },
    outbound: {
      listen: listenAddress(raw.outbound?.listen ?? d.outbound.listen),
      maxConnections: raw.outbound?.maxConnections ?? d.outbound.maxConnections,
      maxHeaderSizeBytes: bytes(raw.outbound?.maxHeaderSize, d.outbound.maxHeaderSize),
      headersTimeoutMs: ms(raw.outbound?.headersTimeout, d.outbound.headersTimeout),
      idleTimeoutMs: ms(raw.outbound?.idleTimeout, d.outbound.idleTimeout),
      allowFrom: raw.outbound?.allowFrom,
      http2MaxConcurrentStreams: raw.outbound?.http2?.maxConcurrentStreams ?? d.outbound.http2.maxConcurrentStreams,
    },
    drainTimeoutMs: ms(raw.drainTimeout, d.drainTimeout),
    stateDir: raw.stateDir === undefined ? undefined : resolveFrom(baseDir, raw.stateDir),
    kubernetes: {
      apiServer: raw.kubernetes?.apiServer,
      tokenFile: raw.kubernetes?.tokenFile === undefined ? undefined : resolveFrom(baseDir, raw.kubernetes.tokenFile),
      caFile: raw.kubernetes?.caFile === undefined ? undefined : resolveFrom(baseDir, raw.kubernetes.caFile),
      nodeName: raw.kubernetes?.nodeName,
      kubeconfig: raw.kubernetes?.kubeconfig === undefined ? undefined : resolveFrom(baseDir, raw.kubernetes.kubeconfig),
      mesh: raw.kubernetes?.mesh === undefined ? undefined : normaliseMesh(raw.kubernetes.mesh, baseDir),
    },
    workers: raw.workers ?? d.workers,
    tls:
      raw.tls === undefined
        ? undefined
        : {
            cert: resolveFrom(baseDir, raw.tls.cert),
            key: resolveFrom(baseDir, raw.tls.key),
            ca: resolveFrom(baseDir, raw.tls.ca),
            minVersion: raw.tls.minVersion ?? d.tls.minVersion,
            expiryWarningMs: ms(raw.tls.expiryWarning, d.tls.expiryWarning),
          },
    inbound:
      raw.inbound === undefined
        ? undefined
        : {
            listen: listenAddress(raw.inbound.listen ?? d.inbound.listen),
            maxConnections: raw.inbound.maxConnections ?? d.inbound.maxConnections,
            handshakeTimeoutMs: ms(raw.inbound.handshakeTimeout, d.inbound.handshakeTimeout),
          },
    local: new Map(Object.entries(raw.local ?? {}).map(([name, l]) => [name, normaliseLocalService(name, l)])),
    limits: { maxInFlight: raw.limits?.maxInFlight ?? d.limits.maxInFlight },
    services: new Map(Object.entries(raw.services ?? {}).map(([name, svc]) => [name, normaliseService(name, svc, baseDir)])),
  };
}

/** An endpoint list, from a service or an endpoints file. */
export function normaliseEndpoints(list: readonly RawEndpoint[]): EndpointSpec[] {
  const d = DEFAULTS.services.endpoints;
  return list.map((e) => {
    const addr = endpointAddress(e.address);
    return {
      address: formatSocketAddress(addr),
      host: addr.host,
      port: addr.port,
      zone: e.zone,
      weight: e.weight ?? d.weight,
      labels: { ...(e.labels ?? d.labels) },
      identity: e.identity,
    };
  });
}

function normaliseService(name: string, svc: RawService, baseDir: string): ServiceConfig {
  const d = DEFAULTS.services;
  return {
    name,
    endpoints: normaliseEndpoints(svc.endpoints ?? []),
    endpointsFile: svc.endpointsFile === undefined ? undefined : resolveFrom(baseDir, svc.endpointsFile),
    discovery: normaliseDiscovery(name, svc.discovery ?? {}, baseDir),
    protocol: svc.protocol ?? d.protocol,
    balancer: normaliseBalancer(svc.balancer ?? {}),
    timeoutMs: ms(svc.timeout, d.timeout),
    connectTimeoutMs: ms(svc.connectTimeout, d.connectTimeout),
    retries: {
      attempts: svc.retries?.attempts ?? d.retries.attempts,
      retryOn: svc.retries?.retryOn ?? [...d.retries.retryOn],
      retryOnGrpc: svc.retries?.retryOnGrpc ?? [...d.retries.retryOnGrpc],
      backoffBaseMs: ms(svc.retries?.backoff?.base, d.retries.backoff.base),
      backoffMaxMs: ms(svc.retries?.backoff?.max, d.retries.backoff.max),
      budget: {
        ratio: svc.retries?.budget?.ratio ?? d.retries.budget.ratio,
        minPerSecond: svc.retries?.budget?.minPerSecond ?? d.retries.budget.minPerSecond,
        windowMs: ms(svc.retries?.budget?.window, d.retries.budget.window),
      },
      bufferLimitBytes: bytes(svc.retries?.bufferLimit, d.retries.bufferLimit),
      perTryTimeoutMs: ms(svc.retries?.perTryTimeout, d.retries.perTryTimeout),
    },
    tcp:
      svc.tcp === undefined
        ? undefined
        : {
            listen: listenAddress(svc.tcp.listen),
            idleTimeoutMs: ms(svc.tcp.idleTimeout, d.tcp.idleTimeout),
            maxConnections: svc.tcp.maxConnections ?? d.tcp.maxConnections,
            allowFrom: svc.tcp.allowFrom,
          },
    outlier: normaliseOutlier(svc.outlier ?? {}),
    healthCheck:
      svc.healthCheck === undefined
        ? undefined
        : {
            kind: svc.healthCheck.http !== undefined ? 'http' : 'tcp',
            // The schema requires http.path; a tcp check carries '/' only to fill the field.
            path: svc.healthCheck.http?.path ?? '/',
            intervalMs: ms(svc.healthCheck.interval, d.healthCheck.interval),
            timeoutMs: ms(svc.healthCheck.timeout, d.healthCheck.timeout),
            unhealthyThreshold: svc.healthCheck.unhealthyThreshold ?? d.healthCheck.unhealthyThreshold,
            healthyThreshold: svc.healthCheck.healthyThreshold ?? d.healthCheck.healthyThreshold,
          },
    concurrency: normaliseConcurrency(svc.concurrency, d.concurrency),
    limits: {
      maxInFlight: svc.limits?.maxInFlight ?? d.limits.maxInFlight,
      maxPendingPerEndpoint: svc.limits?.maxPendingPerEndpoint ?? d.limits.maxPendingPerEndpoint,
    },
    pool: { maxConnections: svc.pool?.maxConnections ?? d.pool.maxConnections, idleTimeoutMs: ms(svc.pool?.idleTimeout, d.pool.idleTimeout) },
    routes: normaliseRoutes(svc.routes),
    access: normaliseAccess(svc.access),
    rateLimit: normaliseRateLimit(svc.rateLimit),
    faults: (svc.faults ?? []).map(normaliseFault),
    canary: normaliseCanary(svc.canary),
  };
}

function normaliseLocalService(name: string, l: RawLocalService): LocalServiceConfig {
  const d = DEFAULTS.local;
  return {
    name,
    target: endpointAddress(l.target),
    allow: l.allow ?? [...d.allow],
    deny: l.deny ?? [...d.deny],
    tcp: l.tcp ?? d.tcp,
    protocol: l.protocol ?? d.protocol,
    timeoutMs: ms(l.timeout, d.timeout),
    concurrency: normaliseConcurrency(l.concurrency, d.concurrency),
    access: normaliseAccess(l.access),
    rateLimit: normaliseRateLimit(l.rateLimit),
  };
}

function normaliseBalancer(raw: RawBalancer): BalancerConfig {
  const d = DEFAULTS.services.balancer;
  return {
    algorithm: raw.algorithm ?? d.algorithm,
    decayMs: ms(raw.decay, d.decay),
    defaultRttMs: ms(raw.defaultRtt, d.defaultRtt),
    failurePenalty: raw.failurePenalty ?? d.failurePenalty,
    hashOn:
      raw.hashOn?.header !== undefined
        ? { header: raw.hashOn.header.toLowerCase() }
        : raw.hashOn?.cookie !== undefined
          ? { cookie: raw.hashOn.cookie }
          : undefined,
    zoneAware: raw.zoneAware ?? d.zoneAware,
    slowStart: {
      windowMs: ms(raw.slowStart?.window, d.slowStart.window),
      aggression: raw.slowStart?.aggression ?? d.slowStart.aggression,
      minWeight: raw.slowStart?.minWeight ?? d.slowStart.minWeight,
    },
  };
}

function normaliseConcurrency(raw: RawConcurrency | undefined, d: typeof DEFAULTS.services.concurrency): ConcurrencySettings {
  return {
    adaptive: raw?.adaptive ?? d.adaptive,
    initialLimit: raw?.initialLimit ?? d.initialLimit,
    minLimit: raw?.minLimit ?? d.minLimit,
    maxLimit: raw?.maxLimit ?? d.maxLimit,
    tolerance: raw?.tolerance ?? d.tolerance,
    windowMs: ms(raw?.window, d.window),
    queue: { size: raw?.queue?.size ?? d.queue.size, maxWaitMs: ms(raw?.queue?.maxWait, d.queue.maxWait) },
  };
}

function normaliseOutlier(raw: RawOutlier): OutlierSettings {
  const d = DEFAULTS.services.outlier;
  return {
    enabled: raw.enabled ?? d.enabled,
    consecutiveGatewayFailures: raw.consecutiveGatewayFailures ?? d.consecutiveGatewayFailures,
    consecutiveServerErrors: raw.consecutiveServerErrors ?? d.consecutiveServerErrors,
    failurePercentage: {
      threshold: raw.failurePercentage?.threshold ?? d.failurePercentage.threshold,
      minRequests: raw.failurePercentage?.minRequests ?? d.failurePercentage.minRequests,
      minFailures: raw.failurePercentage?.minFailures ?? d.failurePercentage.minFailures,
    },
    successRate: {
      stdevFactor: raw.successRate?.stdevFactor ?? d.successRate.stdevFactor,
      minRequests: raw.successRate?.minRequests ?? d.successRate.minRequests,
      minHosts: raw.successRate?.minHosts ?? d.successRate.minHosts,
    },
    latency: {
      factor: raw.latency?.factor ?? d.latency.factor,
      percentile: raw.latency?.percentile ?? d.latency.percentile,
      floorMs: ms(raw.latency?.floor, d.latency.floor),
      minRequests: raw.latency?.minRequests ?? d.latency.minRequests,
      minHosts: raw.latency?.minHosts ?? d.latency.minHosts,
    },
    windowMs: ms(raw.window, d.window),
    baseEjectionMs: ms(raw.baseEjection, d.baseEjection),
    maxEjectionMs: ms(raw.maxEjection, d.maxEjection),
    maxEjectionShare: raw.maxEjectionShare ?? d.maxEjectionShare,
    panicThreshold: raw.panicThreshold ?? d.panicThreshold,
    probationMs: ms(raw.probation, d.probation),
    returnRampMs: ms(raw.returnRamp, d.returnRamp),
  };
}

function resolveFrom(baseDir: string, file: string): string {
  return isAbsolute(file) ? file : resolve(baseDir, file);
}

function normaliseDiscovery(service: string, raw: RawDiscovery, baseDir: string): DiscoveryConfig {
  const d = DEFAULTS.services.discovery;
  const { dns, consul, kubernetes } = raw;
  return {
    dns:
      dns === undefined
        ? undefined
        : {
            name: dns.name,
            type: dns.type ?? d.dns.type,
            port: dns.port,
            servers: (dns.servers ?? []).map(endpointAddress),
            minTtlMs: ms(dns.minTtl, d.dns.minTtl),
            maxTtlMs: ms(dns.maxTtl, d.dns.maxTtl),
            negativeTtlMs: ms(dns.negativeTtl, d.dns.negativeTtl),
            timeoutMs: ms(dns.timeout, d.dns.timeout),
          },
    consul:
      consul === undefined
        ? undefined
        : {
            address: consul.address ?? d.consul.address,
            service: consul.service ?? service,
            tag: consul.tag,
            datacenter: consul.datacenter,
            tokenFile: consul.tokenFile === undefined ? undefined : resolveFrom(baseDir, consul.tokenFile),
            waitMs: ms(consul.wait, d.consul.wait),
          },
    kubernetes:
      kubernetes === undefined
        ? undefined
        : {
            service: kubernetes.service,
            namespace: kubernetes.namespace ?? d.kubernetes.namespace,
            port: kubernetes.port,
            kubeconfig: kubernetes.kubeconfig === undefined ? undefined : resolveFrom(baseDir, kubernetes.kubeconfig),
            idleTimeoutMs: ms(kubernetes.idleTimeout, d.kubernetes.idleTimeout),
          },
    acceptEmptyAfterMs: ms(raw.acceptEmptyAfter, d.acceptEmptyAfter),
  };
}

function normaliseMesh(raw: RawKubernetesMesh, baseDir: string): KubernetesMeshConfig {
  const d = DEFAULTS.kubernetes.mesh;
  return {
    trustDomain: raw.trustDomain ?? d.trustDomain,
    clusterDomain: raw.clusterDomain ?? d.clusterDomain,
    meshdNamespace: raw.meshdNamespace ?? d.meshdNamespace,
    meshdSelector: raw.meshdSelector ?? d.meshdSelector,
    inboundPort: raw.inboundPort ?? d.inboundPort,
    idleTimeoutMs: ms(raw.idleTimeout, d.idleTimeout),
    httpRoutes: raw.httpRoutes ?? d.httpRoutes,
    // A template: each discovered Service gets these settings under its own name.
    service: normaliseService('*', raw.service ?? {}, baseDir),
    authorization: new Map(Object.entries(raw.authorization ?? {}).map(([name, p]) => [name, { allow: p.allow ?? [], deny: p.deny ?? [] }])),
  };
}
