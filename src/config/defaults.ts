/**
 * Every default of the config in one table, keyed as the YAML is written:
 * the default of `services.*.timeout` is `DEFAULTS.services.timeout`, that of
 * `outbound.headersTimeout` is `DEFAULTS.outbound.headersTimeout`.
 *
 * Values are in the units MeshConfig holds: durations in milliseconds, sizes
 * in bytes. Listen addresses are written as in the config. The modules that
 * use a default when no config is involved (the outlier detector, the
 * gradient limiter, peak EWMA) read their numbers from here, so each number
 * is written once.
 *
 * Not in the table: `node.name`, which is this host's name when the config is
 * loaded, and keys that are simply absent when not set (zones, allowFrom, tls
 * files, kubernetes settings, endpointsFile, hashOn, healthCheck itself).
 */
import type { OutlierConfig } from './types.ts';
import { deepFreeze } from './deep-freeze.ts';

/** The outlier detector's thresholds when the config sets none (docs/design.md says why each is what it is). */
export const DEFAULT_OUTLIER: OutlierConfig = {
  consecutiveGatewayFailures: 5,
  consecutiveServerErrors: 5,
  failurePercentage: { threshold: 0.2, minRequests: 5, minFailures: 3 },
  successRate: { stdevFactor: 1.9, minRequests: 50, minHosts: 3 },
  latency: { factor: 3, percentile: 0.9, floorMs: 5, minRequests: 10, minHosts: 2 },
  windowMs: 5_000,
  baseEjectionMs: 10_000,
  maxEjectionMs: 300_000,
  maxEjectionShare: 0.5,
  panicThreshold: 0.5,
  probationMs: 10_000,
};

const SECOND = 1_000;
const HOUR = 3_600 * SECOND;
const KiB = 1_024;

/** Adaptive concurrency, the same for `services.*` and `local.*`. */
const concurrency = {
  adaptive: false,
  initialLimit: 100,
  minLimit: 8,
  maxLimit: 2_000,
  tolerance: 1.15,
  window: 250,
  queue: { size: 1_000, maxWait: 1 * SECOND },
} as const;

/** The config's defaults, deep-frozen. */
export const DEFAULTS = deepFreeze({
  log: { level: 'info', access: { enabled: false, sampleRatio: 1 } },
  tracing: { enabled: false },
  admin: { listen: '127.0.0.1:9990', maxConnections: 64, allowHosts: [] as readonly string[] },
  outbound: {
    listen: '127.0.0.1:4140',
    maxConnections: 'auto',
    maxHeaderSize: 16 * KiB,
    headersTimeout: 10 * SECOND,
    idleTimeout: 60 * SECOND,
    // Per HTTP/2 connection: one caller's connection cannot hold the whole in-flight ceiling.
    http2: { maxConcurrentStreams: 100 },
  },
  drainTimeout: 10 * SECOND,
  workers: 1,
  tls: { minVersion: 'TLSv1.3', expiryWarning: 24 * HOUR },
  inbound: { listen: '0.0.0.0:4143', maxConnections: 10_000, handshakeTimeout: 5 * SECOND },
  limits: { maxInFlight: 20_000 },
  kubernetes: {
    mesh: {
      trustDomain: 'cluster.local',
      clusterDomain: 'cluster.local',
      meshdNamespace: 'meshd',
      meshdSelector: 'app.kubernetes.io/name=meshd',
      inboundPort: 4143,
      idleTimeout: 150 * SECOND,
      httpRoutes: true,
    },
  },
  local: {
    allow: [] as readonly string[],
    deny: [] as readonly string[],
    tcp: false,
    protocol: 'http1',
    timeout: 30 * SECOND,
    concurrency,
  },
  services: {
    /** Also the weight of endpoints read from an endpoints file. */
    endpoints: { weight: 1, labels: {} },
    discovery: {
      dns: { type: 'SRV', minTtl: 5 * SECOND, maxTtl: 300 * SECOND, negativeTtl: 30 * SECOND, timeout: 2 * SECOND },
      consul: { address: 'http://127.0.0.1:8500', wait: 30 * SECOND },
      kubernetes: { namespace: 'default', idleTimeout: 150 * SECOND },
      acceptEmptyAfter: 60 * SECOND,
    },
    protocol: 'http1',
    balancer: {
      algorithm: 'p2c-ewma',
      decay: 10 * SECOND,
      defaultRtt: 30,
      failurePenalty: 10,
      zoneAware: true,
      slowStart: { window: 0, aggression: 1, minWeight: 0.1 },
    },
    timeout: 15 * SECOND,
    connectTimeout: 2 * SECOND,
    retries: {
      attempts: 3,
      retryOn: [502, 503, 504],
      retryOnGrpc: [14],
      backoff: { base: 25, max: 250 },
      budget: { ratio: 0.2, minPerSecond: 10, window: 10 * SECOND },
      bufferLimit: 64 * KiB,
      perTryTimeout: 0,
    },
    tcp: { idleTimeout: 1 * HOUR, maxConnections: 1_024 },
    outlier: {
      enabled: true,
      consecutiveGatewayFailures: DEFAULT_OUTLIER.consecutiveGatewayFailures,
      consecutiveServerErrors: DEFAULT_OUTLIER.consecutiveServerErrors,
      failurePercentage: {
        threshold: DEFAULT_OUTLIER.failurePercentage.threshold,
        minRequests: DEFAULT_OUTLIER.failurePercentage.minRequests,
        minFailures: DEFAULT_OUTLIER.failurePercentage.minFailures,
      },
      successRate: {
        stdevFactor: DEFAULT_OUTLIER.successRate.stdevFactor,
        minRequests: DEFAULT_OUTLIER.successRate.minRequests,
        minHosts: DEFAULT_OUTLIER.successRate.minHosts,
      },
      latency: {
        factor: DEFAULT_OUTLIER.latency.factor,
        percentile: DEFAULT_OUTLIER.latency.percentile,
        floor: DEFAULT_OUTLIER.latency.floorMs,
        minRequests: DEFAULT_OUTLIER.latency.minRequests,
        minHosts: DEFAULT_OUTLIER.latency.minHosts,
      },
      window: DEFAULT_OUTLIER.windowMs,
      baseEjection: DEFAULT_OUTLIER.baseEjectionMs,
      maxEjection: DEFAULT_OUTLIER.maxEjectionMs,
      maxEjectionShare: DEFAULT_OUTLIER.maxEjectionShare,
      panicThreshold: DEFAULT_OUTLIER.panicThreshold,
      probation: DEFAULT_OUTLIER.probationMs,
      returnRamp: 10 * SECOND,
    },
    healthCheck: { interval: 5 * SECOND, timeout: 1 * SECOND, unhealthyThreshold: 2, healthyThreshold: 2 },
    concurrency,
    limits: { maxInFlight: 10_000, maxPendingPerEndpoint: 1_024 },
    pool: { maxConnections: 256, idleTimeout: 30 * SECOND },
    // Traffic policy: percentages default to every request; a bucket's burst to one second of its rate.
    routes: { backendWeight: 1, mirrorPercent: 100, redirectStatusCode: 302 as const },
    rateLimit: { per: 'service' },
    faults: { percent: 100 },
    canary: {
      steps: [5, 25, 50, 100] as readonly number[],
      dwell: 60 * SECOND,
      minRequests: 100,
      maxSuccessRateDrop: 0.01,
      maxLatencyRatio: 1.5,
      latencyPercentile: 0.9,
      latencyFloor: 5,
    },
  },
} as const);
