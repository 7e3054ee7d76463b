/**
 * The validated, normalised config the daemon runs on: units resolved to
 * numbers, defaults filled in, deep-frozen. Only ./load.ts builds these.
 */
import type { LogLevel } from '../log.ts';
import type { SocketAddress } from './address.ts';

export type { LogLevel } from '../log.ts';

/** The outlier detector's thresholds (feedback/outlier.ts), as the config sets them. */
export interface OutlierConfig {
  readonly consecutiveGatewayFailures: number;
  readonly consecutiveServerErrors: number;
  readonly failurePercentage: { readonly threshold: number; readonly minRequests: number; readonly minFailures: number };
  readonly successRate: { readonly stdevFactor: number; readonly minRequests: number; readonly minHosts: number };
  readonly latency: { readonly factor: number; readonly percentile: number; readonly floorMs: number; readonly minRequests: number; readonly minHosts: number };
  /** Window of the rate and latency rules. */
  readonly windowMs: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  /** Share of a service's endpoints that may be out at once (at least one may always be). */
  readonly maxEjectionShare: number;
  /** Below this share of available endpoints, balance over all of them. */
  readonly panicThreshold: number;
  /** After a return, thresholds are halved for this long. */
  readonly probationMs: number;
}

/** Active health checks (feedback/health-check.ts). */
export interface HealthCheckConfig {
  readonly kind: 'http' | 'tcp';
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
}

/** Where this host's TLS material lives (tls/material.ts). */
export interface TlsPaths {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

export interface TlsSettings extends TlsPaths {
  readonly minVersion: TlsVersion;
  /** Log a warning when the certificate has less than this left. */
  readonly expiryWarningMs: number;
}

export type BalancerAlgorithm = 'p2c-ewma' | 'least-request' | 'round-robin' | 'weighted-round-robin' | 'ring-hash';

export interface BalancerConfig {
  readonly algorithm: BalancerAlgorithm;
  /** Peak-EWMA time constant. */
  readonly decayMs: number;
  /** Latency assumed for endpoints not yet measured. */
  readonly defaultRttMs: number;
  /** Cost multiplier per unit of failure rate (p2c-ewma). */
  readonly failurePenalty: number;
  /** Request attribute consistent hashing keys on (ring-hash). */
  readonly hashOn: { readonly header: string } | { readonly cookie: string } | undefined;
  /** Prefer endpoints in node.zone while that zone has healthy capacity. */
  readonly zoneAware: boolean;
  readonly slowStart: { readonly windowMs: number; readonly aggression: number; readonly minWeight: number };
}

export interface EndpointSpec {
  /** Canonical "host:port"; the endpoint's key within its service. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly zone: string | undefined;
  readonly weight: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly identity: string | undefined;
  /**
   * Set when the endpoint (a pod on another Kubernetes node) is reached through the meshd of its
   * node: requests go there over mTLS, naming the pod and the Service. Connections to one node's
   * meshd are shared by all of its pods.
   */
  readonly via?: EndpointVia | undefined;
  /** The HTTP version the endpoint speaks when it says so itself (a Kubernetes port's appProtocol); undefined: the service's. */
  readonly protocol?: 'http1' | 'h2c' | undefined;
}

/** The meshd that delivers to an endpoint, and the Service ("name.namespace") to name there. */
export interface EndpointVia {
  readonly host: string;
  readonly port: number;
  readonly identity: string;
  readonly service: string;
}

export interface PoolConfig {
  /** Upper bound on open connections to one endpoint. */
  readonly maxConnections: number;
  readonly idleTimeoutMs: number;
}

export interface RetryConfig {
  /** Total attempts including the first; 1 disables retries. */
  readonly attempts: number;
  readonly retryOn: readonly number[];
  readonly retryOnGrpc: readonly number[];
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly budget: { readonly ratio: number; readonly minPerSecond: number; readonly windowMs: number };
  readonly bufferLimitBytes: number;
  readonly perTryTimeoutMs: number;
}

export interface LimitsConfig {
  /** Requests in flight for the whole service; excess gets 503 overloaded. */
  readonly maxInFlight: number;
  /** Requests that may queue per endpoint beyond its pool's connections. */
  readonly maxPendingPerEndpoint: number;
}

/** The outlier detector's settings, plus whether it runs and how a returning endpoint ramps. */
export interface OutlierSettings extends OutlierConfig {
  readonly enabled: boolean;
  /** Slow-start ramp of an endpoint returning from ejection. */
  readonly returnRampMs: number;
}

export interface ConcurrencySettings {
  readonly adaptive: boolean;
  readonly initialLimit: number;
  readonly minLimit: number;
  readonly maxLimit: number;
  readonly tolerance: number;
  readonly windowMs: number;
  readonly queue: { readonly size: number; readonly maxWaitMs: number };
}

/** DNS discovery: A/AAAA (with `port`) or SRV records, refreshed by their TTL within bounds. */
export interface DnsDiscoveryConfig {
  readonly name: string;
  readonly type: 'SRV' | 'A' | 'AAAA' | 'A+AAAA';
  /** The endpoints' port for A/AAAA answers (SRV answers carry their own). */
  readonly port: number | undefined;
  /** Name servers to ask; empty: the system's (/etc/resolv.conf). */
  readonly servers: readonly { readonly host: string; readonly port: number }[];
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  /** How long a "no such name" or "no records" answer is believed. */
  readonly negativeTtlMs: number;
  readonly timeoutMs: number;
}

/** Consul's catalog: blocking queries on the health endpoint, passing instances only. */
export interface ConsulDiscoveryConfig {
  readonly address: string;
  readonly service: string;
  readonly tag: string | undefined;
  readonly datacenter: string | undefined;
  readonly tokenFile: string | undefined;
  readonly waitMs: number;
}

/** Kubernetes EndpointSlices of a Service, listed and watched with the official client. */
export interface KubernetesDiscoveryConfig {
  readonly service: string;
  readonly namespace: string;
  /** The EndpointSlice port to use, by name or number; undefined: the only (or first) port. */
  readonly port: string | number | undefined;
  /** A kubeconfig file; undefined: the pod's in-cluster service account. */
  readonly kubeconfig: string | undefined;
  /** A watch silent for longer than this is restarted (bookmarks arrive about once a minute). */
  readonly idleTimeoutMs: number;
}

/** Kubernetes mesh mode: a Service an HTTPRoute sends to, on one of its ports. */
export interface MeshBackend {
  readonly service: string;
  /** The Service port's name; undefined: its default port. */
  readonly port?: string | undefined;
}

export interface DiscoveryConfig {
  /** Kubernetes mesh mode: a Service of the cluster, by name and namespace (set by meshd, not the config file). */
  readonly mesh?:
    | {
        readonly service: string;
        readonly namespace: string;
        /** The Service port's name, as its EndpointSlices carry it; undefined: the default port (kubernetes/service-ports.ts). */
        readonly port?: string | undefined;
        /** Other Services of the namespace its HTTPRoutes send to (their pods are labelled `service.meshd.io/NAME: "true"`). */
        readonly backends?: readonly MeshBackend[];
      }
    | undefined;
  readonly dns: DnsDiscoveryConfig | undefined;
  readonly consul: ConsulDiscoveryConfig | undefined;
  readonly kubernetes: KubernetesDiscoveryConfig | undefined;
  /** An empty answer replaces a source's non-empty set only once it has lasted this long (an outage looks empty). */
  readonly acceptEmptyAfterMs: number;
}

export interface ServiceConfig {
  readonly name: string;
  readonly endpoints: readonly EndpointSpec[];
  /** Absolute path of a watched endpoints file, when configured. */
  readonly endpointsFile: string | undefined;
  /** Where else the endpoints are published (DNS, Consul, Kubernetes). */
  readonly discovery: DiscoveryConfig;
  /** What meshd speaks to the endpoints: HTTP/1.1, or HTTP/2 in cleartext (gRPC needs h2c). */
  readonly protocol: 'http1' | 'h2c';
  readonly balancer: BalancerConfig;
  /** Overall deadline for one request, from arrival to the last response byte. */
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly retries: RetryConfig;
  readonly limits: LimitsConfig;
  readonly outlier: OutlierSettings;
  readonly concurrency: ConcurrencySettings;
  /** Active health checks; undefined when not configured. */
  readonly healthCheck: HealthCheckConfig | undefined;
  /** A loopback TCP port whose connections are balanced over this service's endpoints. */
  readonly tcp:
    | {
        readonly listen: SocketAddress;
        readonly idleTimeoutMs: number;
        readonly maxConnections: number;
        /** Source ranges allowed to connect; undefined: anyone who can reach a loopback listener. */
        readonly allowFrom: readonly string[] | undefined;
      }
    | undefined;
  readonly pool: PoolConfig;
  /** Gateway API HTTPRoute rules, in the order written (matching picks by Gateway API precedence). */
  readonly routes: readonly RouteRule[];
  readonly access: readonly AccessRule[];
  readonly rateLimit: RateLimitConfig | undefined;
  /** Fault injections from the config (the admin API adds more at run time). */
  readonly faults: readonly FaultSpec[];
  readonly canary: CanaryConfig | undefined;
}

/** Exact or regular-expression match of a header or query parameter (names of headers lowercase). */
export interface ValueMatch {
  readonly name: string;
  readonly type: 'Exact' | 'RegularExpression';
  readonly value: string;
}

/** One HTTPRouteMatch: every condition set must hold. */
export interface RouteMatch {
  readonly path: { readonly type: 'Exact' | 'PathPrefix' | 'RegularExpression'; readonly value: string } | undefined;
  readonly method: string | undefined;
  readonly headers: readonly ValueMatch[];
  readonly queryParams: readonly ValueMatch[];
  /** The caller's verified identity matches one of these SPIFFE patterns; empty: any caller. */
  readonly callers: readonly string[];
}

export interface HeaderModifier {
  readonly set: readonly { readonly name: string; readonly value: string }[];
  readonly add: readonly { readonly name: string; readonly value: string }[];
  readonly remove: readonly string[];
}

/** Gateway API's HTTPPathModifier: the whole path, or the prefix the rule's PathPrefix match matched. */
export type PathModifier = { readonly type: 'ReplaceFullPath'; readonly value: string } | { readonly type: 'ReplacePrefixMatch'; readonly value: string };

/** RequestRedirect: answer with a redirect instead of forwarding; what is not set comes from the request. */
export interface RequestRedirect {
  readonly scheme: 'http' | 'https' | undefined;
  readonly hostname: string | undefined;
  readonly path: PathModifier | undefined;
  readonly port: number | undefined;
  readonly statusCode: 301 | 302 | 303 | 307 | 308;
}

/** URLRewrite: the Host and path sent upstream. */
export interface UrlRewrite {
  readonly hostname: string | undefined;
  readonly path: PathModifier | undefined;
}

/** Endpoints whose labels include all of `subset`, with a weight among the rule's backends. */
export interface BackendRef {
  readonly subset: Readonly<Record<string, string>>;
  readonly weight: number;
}

export interface RouteRule {
  /** As written, or "rule-N" (1-based); the route label of metrics and logs. */
  readonly name: string;
  /** Any one must match; empty: every request. */
  readonly matches: readonly RouteMatch[];
  readonly requestHeaders: HeaderModifier | undefined;
  readonly responseHeaders: HeaderModifier | undefined;
  readonly mirror: { readonly subset: Readonly<Record<string, string>>; readonly percent: number } | undefined;
  /** Answer with a redirect; the rule then forwards nothing (Gateway API: no backendRefs with it). */
  readonly redirect: RequestRedirect | undefined;
  readonly rewrite: UrlRewrite | undefined;
  /** Empty: the service's default backend (every endpoint, or the canary's split). */
  readonly backendRefs: readonly BackendRef[];
  /** Whole-request deadline; undefined: the service's. */
  readonly timeoutMs: number | undefined;
  /** Per-attempt timeout; undefined: the service's. */
  readonly backendTimeoutMs: number | undefined;
  readonly retry: { readonly attempts: number; readonly codes: readonly number[]; readonly backoffMs: number } | undefined;
  readonly rateLimit: RateLimitConfig | undefined;
  /**
   * Set on rules meshd adds itself, not written in YAML: answer with this error instead of
   * forwarding (Gateway API: 404 when a Service's HTTPRoutes match nothing, 500 for a rule without backends).
   */
  readonly answer?: 'no_route' | 'no_backend' | undefined;
}

export interface AccessRule {
  readonly action: 'allow' | 'deny';
  /** Empty: any caller (also one without a verified identity). */
  readonly callers: readonly string[];
  readonly methods: readonly string[];
  /** Exact paths, or prefixes written with a trailing "*". */
  readonly paths: readonly string[];
}

export interface RateLimitConfig {
  readonly requestsPerSecond: number;
  readonly burst: number;
  readonly per: 'service' | 'caller';
}

export interface FaultMatch {
  readonly subset: Readonly<Record<string, string>> | undefined;
  readonly endpoint: string | undefined;
  readonly route: string | undefined;
  readonly headers: readonly ValueMatch[];
  readonly callers: readonly string[];
}

/** One fault injection; it applies to attempts, after the endpoint is chosen, so the feedback loop sees it. */
export interface FaultSpec {
  readonly name: string;
  readonly match: FaultMatch;
  readonly delay: { readonly ms: number; readonly percent: number } | undefined;
  readonly abort: { readonly status: number | undefined; readonly reset: boolean; readonly percent: number } | undefined;
  /** How long it lasts from when it was first applied. */
  readonly durationMs: number;
}

/** A canary rollout between two subsets, driven by this host's own observations (canary/canary-state.ts). */
export interface CanaryConfig {
  readonly stable: Readonly<Record<string, string>>;
  readonly canary: Readonly<Record<string, string>>;
  readonly steps: readonly number[];
  readonly dwellMs: number;
  readonly minRequests: number;
  readonly maxSuccessRateDrop: number;
  readonly maxLatencyRatio: number;
  readonly latencyPercentile: number;
  readonly latencyFloorMs: number;
}

/** A service this host serves to callers arriving over mTLS. */
export interface LocalServiceConfig {
  readonly name: string;
  readonly target: SocketAddress;
  readonly allow: readonly string[];
  readonly deny: readonly string[];
  /** Raw TCP (routed by SNI) instead of HTTP (routed by Host). */
  readonly tcp: boolean;
  /** How the target is spoken to: HTTP/1.1, or HTTP/2 with prior knowledge (gRPC servers). */
  readonly protocol: 'http1' | 'h2c';
  readonly timeoutMs: number;
  readonly concurrency: ConcurrencySettings;
  /** Access rules by method and path, judged on the verified caller after allow/deny. */
  readonly access: readonly AccessRule[];
  readonly rateLimit: RateLimitConfig | undefined;
}

/** How meshd reaches the Kubernetes API server; every field defaults to the pod's in-cluster setting. */
export interface KubernetesSettings {
  /** https://host:port; undefined: the in-cluster address from KUBERNETES_SERVICE_HOST/PORT. */
  readonly apiServer: string | undefined;
  readonly tokenFile: string | undefined;
  readonly caFile: string | undefined;
  /** The node this meshd runs on; undefined: the NODE_NAME environment variable (downward API spec.nodeName). */
  readonly nodeName: string | undefined;
  /** A kubeconfig for list/watch; undefined: the pod's in-cluster service account. */
  readonly kubeconfig: string | undefined;
  /** Kubernetes mesh mode: every Service of the cluster routable by name, pods reached through their node's meshd. */
  readonly mesh: KubernetesMeshConfig | undefined;
}

/** Kubernetes mesh mode (docs/design.md, "Kubernetes mesh mode"). */
export interface KubernetesMeshConfig {
  /** Workload identities are spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT; meshd's own spiffe://TRUST_DOMAIN/ns/MESHD_NAMESPACE/pod/POD. */
  readonly trustDomain: string;
  /** Services are also named NAME.NAMESPACE.svc.CLUSTER_DOMAIN. */
  readonly clusterDomain: string;
  /** Where the meshd pods run, and how they are labelled. */
  readonly meshdNamespace: string;
  readonly meshdSelector: string;
  /** The inbound port of every node's meshd. */
  readonly inboundPort: number;
  readonly idleTimeoutMs: number;
  /** The settings of every discovered Service (its name and endpoints come from the cluster). */
  readonly service: ServiceConfig;
  /** Read HTTPRoutes whose parentRef is a Service (Gateway API's mesh profile) as that Service's routes. */
  readonly httpRoutes: boolean;
  /** Who may call which Service ("name.namespace"), by the caller's workload identity; a Service not named admits every workload. */
  readonly authorization: ReadonlyMap<string, { readonly allow: readonly string[]; readonly deny: readonly string[] }>;
}

/** Tracing as the config writes it; unset keys fall back to the OTEL_* variables (tracing/settings.ts). */
export interface TracingConfig {
  readonly enabled: boolean;
  readonly sampleRatio: number | undefined;
  /** OTLP/HTTP traces URL, e.g. http://otel-collector:4318/v1/traces. */
  readonly endpoint: string | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
}

export interface MeshConfig {
  /** The file it came from, or "<embedded default>". */
  readonly source: string;
  readonly node: { readonly name: string; readonly zone: string | undefined };
  readonly log: {
    readonly level: LogLevel;
    /** One line per exchange: off, or a share of them (errors always). */
    readonly access: { readonly enabled: boolean; readonly sampleRatio: number };
  };
  readonly tracing: TracingConfig;
  readonly admin: {
    readonly listen: SocketAddress;
    readonly maxConnections: number;
    /** Host names the admin API answers to besides IP literals and localhost (lowercase). */
    readonly allowHosts: readonly string[];
    /** Source ranges besides loopback that may make changes (fault injections, canary commands). */
    readonly allowChangesFrom: readonly string[] | undefined;
  };
  /** The scrape-only listener (GET /metrics), for a Prometheus on another host; undefined: none. */
  readonly metrics: { readonly listen: SocketAddress; readonly allowFrom: readonly string[] | undefined } | undefined;
  readonly outbound: {
    readonly listen: SocketAddress;
    /** "auto" sizes the cap from the process's open-file limit, keeping a reserve. */
    readonly maxConnections: 'auto' | number;
    readonly maxHeaderSizeBytes: number;
    readonly headersTimeoutMs: number;
    readonly idleTimeoutMs: number;
    /** Source ranges allowed to connect; undefined: anyone who can reach a loopback listener. */
    readonly allowFrom: readonly string[] | undefined;
    /** Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
    readonly http2MaxConcurrentStreams: number;
  };
  readonly drainTimeoutMs: number;
  /** Where what must outlive a restart is kept (canary rollouts); undefined keeps nothing. Read at start. */
  readonly stateDir: string | undefined;
  /** How to reach the Kubernetes API (in-cluster by default), for `allowFrom: [ node-pod-cidrs ]`. */
  readonly kubernetes: KubernetesSettings;
  /** Processes carrying traffic: 'auto' is one per available core; 1 runs everything in one process. */
  readonly workers: number | 'auto';
  /** This host's identity; required by inbound and by endpoints that have an identity. */
  readonly tls: TlsSettings | undefined;
  readonly inbound: { readonly listen: SocketAddress; readonly maxConnections: number; readonly handshakeTimeoutMs: number } | undefined;
  readonly local: ReadonlyMap<string, LocalServiceConfig>;
  /** Requests, tunnels and TCP connections in flight for the whole daemon (protects the host). */
  readonly limits: { readonly maxInFlight: number };
  readonly services: ReadonlyMap<string, ServiceConfig>;
}
