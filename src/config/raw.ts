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
}

export interface RawLocalService {
  target: string;
  allow?: string[];
  deny?: string[];
  tcp?: boolean;
  protocol?: 'http1' | 'h2c';
  timeout?: string;
  concurrency?: RawConcurrency;
}

export interface RawConfig {
  node?: { name?: string; zone?: string };
  log?: { level?: LogLevel };
  admin?: { listen?: string; maxConnections?: number; allowHosts?: string[] };
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
  service?: RawService;
  authorization?: Record<string, { allow?: string[]; deny?: string[] }>;
}
