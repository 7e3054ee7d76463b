/**
 * The config document as written, once the schema has accepted it: every key
 * optional unless the schema requires it, durations and sizes still text.
 * ./normalise.ts turns it into a MeshConfig; ./rules.ts reads it where the
 * written form matters.
 */
import type { BalancerAlgorithm, LogLevel } from './types.ts';

export interface RawEndpoint {
  address: string;
  zone?: string;
  weight?: number;
  labels?: Record<string, string>;
  identity?: string;
}

export interface RawBalancer {
  algorithm?: BalancerAlgorithm;
  decay?: string;
  defaultRtt?: string;
  failurePenalty?: number;
  hashOn?: { header?: string; cookie?: string };
  zoneAware?: boolean;
  slowStart?: { window?: string; aggression?: number; minWeight?: number };
}

export interface RawConcurrency {
  adaptive?: boolean;
  initialLimit?: number;
  minLimit?: number;
  maxLimit?: number;
  tolerance?: number;
  window?: string;
  queue?: { size?: number; maxWait?: string };
}

export interface RawOutlier {
  enabled?: boolean;
  consecutiveGatewayFailures?: number;
  consecutiveServerErrors?: number;
  failurePercentage?: { threshold?: number; minRequests?: number; minFailures?: number };
  successRate?: { stdevFactor?: number; minRequests?: number; minHosts?: number };
  latency?: { factor?: number; percentile?: number; floor?: string; minRequests?: number; minHosts?: number };
  window?: string;
  baseEjection?: string;
  maxEjection?: string;
  maxEjectionShare?: number;
  panicThreshold?: number;
  probation?: string;
  returnRamp?: string;
}

export interface RawHealthCheck {
  http?: { path: string };
  tcp?: boolean;
  interval?: string;
  timeout?: string;
  unhealthyThreshold?: number;
  healthyThreshold?: number;
}

export interface RawService {
  endpoints?: RawEndpoint[];
  endpointsFile?: string;
  discovery?: RawDiscovery;
  protocol?: 'http1' | 'h2c';
  balancer?: RawBalancer;
  timeout?: string;
  connectTimeout?: string;
  retries?: {
    attempts?: number;
    retryOn?: number[];
    retryOnGrpc?: number[];
    backoff?: { base?: string; max?: string };
    budget?: { ratio?: number; minPerSecond?: number; window?: string };
    bufferLimit?: string;
    perTryTimeout?: string;
  };
  limits?: { maxInFlight?: number; maxPendingPerEndpoint?: number };
  outlier?: RawOutlier;
  healthCheck?: RawHealthCheck;
  concurrency?: RawConcurrency;
  tcp?: { listen: string; idleTimeout?: string; maxConnections?: number; allowFrom?: string[] };
  pool?: { maxConnections?: number; idleTimeout?: string };
  routes?: RawRouteRule[];
  access?: RawAccessRule[];
  rateLimit?: RawRateLimit;
  faults?: RawFault[];
  canary?: RawCanary;
}

export interface RawValueMatch {
  type?: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface RawHeaderModifier {
  set?: { name: string; value: string }[];
  add?: { name: string; value: string }[];
  remove?: string[];
}

export interface RawPathModifier {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

/** One rule of a Gateway API HTTPRoute, with meshd's `subset` backends and `callers` matches. */
export interface RawRouteRule {
  name?: string;
  matches?: {
    path?: { type?: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string };
    method?: string;
    headers?: RawValueMatch[];
    queryParams?: RawValueMatch[];
    callers?: string[];
  }[];
  filters?: {
    type: 'RequestHeaderModifier' | 'ResponseHeaderModifier' | 'RequestMirror' | 'RequestRedirect' | 'URLRewrite';
    requestHeaderModifier?: RawHeaderModifier;
    responseHeaderModifier?: RawHeaderModifier;
    requestMirror?: { backendRef: { subset: Record<string, string> }; percent?: number };
    requestRedirect?: { scheme?: 'http' | 'https'; hostname?: string; path?: RawPathModifier; port?: number; statusCode?: 301 | 302 | 303 | 307 | 308 };
    urlRewrite?: { hostname?: string; path?: RawPathModifier };
  }[];
  backendRefs?: { subset: Record<string, string>; weight?: number }[];
  timeouts?: { request?: string; backendRequest?: string };
  retry?: { attempts?: number; codes?: number[]; backoff?: string };
  rateLimit?: RawRateLimit;
}

export interface RawAccessRule {
  action: 'allow' | 'deny';
  callers?: string[];
  methods?: string[];
  paths?: string[];
}

export interface RawRateLimit {
  requestsPerSecond: number;
  burst?: number;
  per?: 'service' | 'caller';
}

export interface RawFault {
  name: string;
  match?: { subset?: Record<string, string>; endpoint?: string; route?: string; headers?: RawValueMatch[]; callers?: string[] };
  delay?: { duration: string; percent?: number };
  abort?: { status?: number; reset?: true; percent?: number };
  duration: string;
}

export interface RawCanary {
  stable: Record<string, string>;
  canary: Record<string, string>;
  steps?: number[];
  dwell?: string;
  minRequests?: number;
  maxSuccessRateDrop?: number;
  maxLatencyRatio?: number;
  latencyPercentile?: number;
  latencyFloor?: string;
}

export interface RawLocalService {
  target: string;
  allow?: string[];
  deny?: string[];
  tcp?: boolean;
  protocol?: 'http1' | 'h2c';
  timeout?: string;
  concurrency?: RawConcurrency;
  access?: RawAccessRule[];
  rateLimit?: RawRateLimit;
}

export interface RawConfig {
  node?: { name?: string; zone?: string };
  log?: { level?: LogLevel; access?: { enabled?: boolean; sampleRatio?: number } };
  tracing?: { enabled?: boolean; sampleRatio?: number; endpoint?: string; headers?: Record<string, string> };
  admin?: { listen?: string; maxConnections?: number; allowHosts?: string[]; allowChangesFrom?: string[] };
  metrics?: { listen: string; allowFrom?: string[] };
  outbound?: {
    listen?: string;
    maxConnections?: 'auto' | number;
    maxHeaderSize?: string;
    headersTimeout?: string;
    idleTimeout?: string;
    allowFrom?: string[];
    http2?: { maxConcurrentStreams?: number };
  };
  drainTimeout?: string;
  stateDir?: string;
  kubernetes?: { apiServer?: string; tokenFile?: string; caFile?: string; nodeName?: string; kubeconfig?: string; mesh?: RawKubernetesMesh };
  workers?: number | 'auto';
  inbound?: { listen?: string; maxConnections?: number; handshakeTimeout?: string };
  tls?: { cert: string; key: string; ca: string; minVersion?: 'TLSv1.2' | 'TLSv1.3'; expiryWarning?: string };
  local?: Record<string, RawLocalService>;
  limits?: { maxInFlight?: number };
  services?: Record<string, RawService>;
}

export interface RawDiscovery {
  dns?: {
    name: string;
    type?: 'SRV' | 'A' | 'AAAA' | 'A+AAAA';
    port?: number;
    servers?: string[];
    minTtl?: string;
    maxTtl?: string;
    negativeTtl?: string;
    timeout?: string;
  };
  consul?: { address?: string; service?: string; tag?: string; datacenter?: string; tokenFile?: string; wait?: string };
  kubernetes?: { service: string; namespace?: string; port?: string | number; kubeconfig?: string; idleTimeout?: string };
  acceptEmptyAfter?: string;
}

export interface RawKubernetesMesh {
  trustDomain?: string;
  clusterDomain?: string;
  meshdNamespace?: string;
  meshdSelector?: string;
  inboundPort?: number;
  idleTimeout?: string;
  httpRoutes?: boolean;
  service?: RawService;
  authorization?: Record<string, { allow?: string[]; deny?: string[] }>;
}
