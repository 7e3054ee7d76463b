/**
 * Config loading: YAML text → schema check → semantic checks → normalised,
 * deep-frozen MeshConfig. File access is injected so tests need no disk.
 */
import { hostname } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../errors.ts';
import { formatSocketAddress, isLoopback, parseSocketAddress, type SocketAddress } from './address.ts';
import { DEFAULT_CONFIG_SOURCE, DEFAULT_CONFIG_YAML } from './default.ts';
import { CONFIG_SCHEMA, ENDPOINTS_FILE_SCHEMA } from './schema.ts';
import type { BalancerAlgorithm, BalancerConfig, ConcurrencySettings, EndpointSpec, LocalServiceConfig, LogLevel, MeshConfig, OutlierSettings, ServiceConfig } from './types.ts';
import { parseDuration, parseSize } from './units.ts';
import { identityPatternProblem } from '../tls/identity.ts';
import { compileSchema, formatPath, parseYaml, schemaProblems, type PathSegment } from './validate.ts';

const validateConfig = compileSchema(CONFIG_SCHEMA);
const validateEndpointsFile = compileSchema(ENDPOINTS_FILE_SCHEMA);

export type ReadText = (path: string) => Promise<string>;

/** Loads and validates a config file; throws ConfigError naming every problem. */
export async function loadConfigFile(path: string, readText: ReadText): Promise<MeshConfig> {
  return (await loadConfigFileWithText(path, readText)).config;
}

/** As loadConfigFile, also returning the text it validated (to recognise unchanged files later). */
export async function loadConfigFileWithText(path: string, readText: ReadText): Promise<{ config: MeshConfig; text: string }> {
  let text: string;
  try {
    text = await readText(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : `cannot read: ${(err as Error).message}`;
    throw new ConfigError(path, [{ path: '', message: reason }]);
  }
  return { config: parseConfig(text, path, dirname(resolve(path))), text };
}

/** The embedded default config: outbound on 127.0.0.1:4140, admin on 127.0.0.1:9990. */
export function defaultConfig(): MeshConfig {
  return parseConfig(DEFAULT_CONFIG_YAML, DEFAULT_CONFIG_SOURCE, process.cwd());
}

/** Parses config text; `baseDir` resolves relative file paths inside it. */
export function parseConfig(text: string, source: string, baseDir: string): MeshConfig {
  const parsed = parseYaml(text);
  if (Array.isArray(parsed)) throw new ConfigError(source, parsed);
  const raw = parsed.value ?? {};
  const problems = schemaProblems(validateConfig, raw, parsed.locate);
  if (problems.length > 0) throw new ConfigError(source, problems);
  const config = normalise(raw as RawConfig, source, baseDir, (path, message) => {
    const line = parsed.locate(path);
    problems.push({ path: formatPath(path), message, ...(line === undefined ? {} : { line }) });
  });
  if (problems.length > 0) throw new ConfigError(source, problems);
  return deepFreeze(config);
}

/** Parses an endpoints file (`{ endpoints: [...] }`) for the file discovery source. */
export function parseEndpointsFile(text: string, source: string): EndpointSpec[] {
  const parsed = parseYaml(text);
  if (Array.isArray(parsed)) throw new ConfigError(source, parsed);
  const problems = schemaProblems(validateEndpointsFile, parsed.value, parsed.locate);
  if (problems.length > 0) throw new ConfigError(source, problems);
  const endpoints = normaliseEndpoints((parsed.value as { endpoints: RawEndpoint[] }).endpoints, ['endpoints'], (path, message) => {
    const line = parsed.locate(path);
    problems.push({ path: formatPath(path), message, ...(line === undefined ? {} : { line }) });
  });
  if (problems.length > 0) throw new ConfigError(source, problems);
  return endpoints.map((e) => Object.freeze(e));
}

interface RawEndpoint {
  address: string;
  zone?: string;
  weight?: number;
  labels?: Record<string, string>;
  identity?: string;
}
interface RawService {
  endpoints?: RawEndpoint[];
  endpointsFile?: string;
  protocol?: 'http1' | 'h2c';
  balancer?: {
    algorithm?: BalancerAlgorithm;
    decay?: string;
    defaultRtt?: string;
    failurePenalty?: number;
    hashOn?: { header?: string; cookie?: string };
    zoneAware?: boolean;
    slowStart?: { window?: string; aggression?: number; minWeight?: number };
  };
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
  healthCheck?: { http?: { path: string }; tcp?: boolean; interval?: string; timeout?: string; unhealthyThreshold?: number; healthyThreshold?: number };
  concurrency?: {
    adaptive?: boolean;
    initialLimit?: number;
    minLimit?: number;
    maxLimit?: number;
    tolerance?: number;
    window?: string;
    queue?: { size?: number; maxWait?: string };
  };
  tcp?: { listen: string; idleTimeout?: string; maxConnections?: number; allowFrom?: string[] };
  pool?: { maxConnections?: number; idleTimeout?: string };
}
interface RawOutlier {
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
interface RawConfig {
  node?: { name?: string; zone?: string };
  log?: { level?: LogLevel };
  admin?: { listen?: string; maxConnections?: number; allowHosts?: string[] };
  outbound?: { listen?: string; maxConnections?: 'auto' | number; maxHeaderSize?: string; headersTimeout?: string; idleTimeout?: string; allowFrom?: string[]; http2?: { maxConcurrentStreams?: number } };
  drainTimeout?: string;
  kubernetes?: { apiServer?: string; tokenFile?: string; caFile?: string; nodeName?: string };
  workers?: number | 'auto';
  inbound?: { listen?: string; maxConnections?: number; handshakeTimeout?: string };
  tls?: { cert: string; key: string; ca: string; minVersion?: 'TLSv1.2' | 'TLSv1.3'; expiryWarning?: string };
  local?: Record<string, { target: string; allow?: string[]; deny?: string[]; tcp?: boolean; protocol?: 'http1' | 'h2c'; timeout?: string; concurrency?: RawService['concurrency'] }>;
  limits?: { maxInFlight?: number };
  services?: Record<string, RawService>;
}

type Report = (path: PathSegment[], message: string) => void;

// The schema has already checked every format, so these parses cannot fail.
const ms = (text: string | undefined, fallback: string): number => parseDuration(text ?? fallback) as number;
const bytes = (text: string | undefined, fallback: string): number => parseSize(text ?? fallback) as number;
const listenAddress = (text: string | undefined, fallback: string): SocketAddress =>
  parseSocketAddress(text ?? fallback, { allowPortZero: true }) as SocketAddress;

function normalise(raw: RawConfig, source: string, baseDir: string, report: Report): MeshConfig {
  const services = new Map<string, ServiceConfig>();
  for (const [name, svc] of Object.entries(raw.services ?? {})) {
    const endpoints = normaliseEndpoints(svc.endpoints ?? [], ['services', name, 'endpoints'], report);
    const file = svc.endpointsFile;
    services.set(name, {
      name,
      endpoints,
      endpointsFile: file === undefined ? undefined : isAbsolute(file) ? file : resolve(baseDir, file),
      protocol: svc.protocol ?? 'http1',
      balancer: normaliseBalancer(svc.balancer ?? {}, ['services', name, 'balancer'], report),
      timeoutMs: ms(svc.timeout, '15s'),
      connectTimeoutMs: ms(svc.connectTimeout, '2s'),
      retries: {
        attempts: svc.retries?.attempts ?? 3,
        retryOn: svc.retries?.retryOn ?? [502, 503, 504],
        retryOnGrpc: svc.retries?.retryOnGrpc ?? [14],
        backoffBaseMs: ms(svc.retries?.backoff?.base, '25ms'),
        backoffMaxMs: ms(svc.retries?.backoff?.max, '250ms'),
        budget: {
          ratio: svc.retries?.budget?.ratio ?? 0.2,
          minPerSecond: svc.retries?.budget?.minPerSecond ?? 10,
          windowMs: ms(svc.retries?.budget?.window, '10s'),
        },
        bufferLimitBytes: bytes(svc.retries?.bufferLimit, '64KiB'),
        perTryTimeoutMs: ms(svc.retries?.perTryTimeout, '0s'),
      },
      tcp:
        svc.tcp === undefined
          ? undefined
          : {
              listen: listenAddress(svc.tcp.listen, ''),
              idleTimeoutMs: ms(svc.tcp.idleTimeout, '1h'),
              maxConnections: svc.tcp.maxConnections ?? 1_024,
              allowFrom: svc.tcp.allowFrom,
            },
      outlier: normaliseOutlier(svc.outlier ?? {}),
      healthCheck:
        svc.healthCheck === undefined
          ? undefined
          : {
              kind: svc.healthCheck.http !== undefined ? 'http' : 'tcp',
              path: svc.healthCheck.http?.path ?? '/',
              intervalMs: ms(svc.healthCheck.interval, '5s'),
              timeoutMs: ms(svc.healthCheck.timeout, '1s'),
              unhealthyThreshold: svc.healthCheck.unhealthyThreshold ?? 2,
              healthyThreshold: svc.healthCheck.healthyThreshold ?? 2,
            },
      concurrency: normaliseConcurrency(svc.concurrency),
      limits: { maxInFlight: svc.limits?.maxInFlight ?? 10_000, maxPendingPerEndpoint: svc.limits?.maxPendingPerEndpoint ?? 1_024 },
      pool: { maxConnections: svc.pool?.maxConnections ?? 256, idleTimeoutMs: ms(svc.pool?.idleTimeout, '30s') },
    });
    // Off loopback, a service port is a relay for anyone who can reach it, with this host's identity.
    if (svc.tcp !== undefined && svc.tcp.allowFrom === undefined && !isLoopback(listenAddress(svc.tcp.listen, '').host)) {
      report(['services', name, 'tcp', 'listen'], `${svc.tcp.listen} is reachable from other hosts: set services.${name}.tcp.allowFrom to the callers' ranges`);
    }
    if (ms(svc.timeout, '15s') === 0) report(['services', name, 'timeout'], 'must be greater than 0s');
    const hc = svc.healthCheck;
    if (hc !== undefined && (hc.http === undefined) === (hc.tcp !== true)) {
      report(['services', name, 'healthCheck'], 'set exactly one of http: { path: /… } or tcp: true');
    }
    if (hc !== undefined && ms(hc.interval, '5s') < 100) report(['services', name, 'healthCheck', 'interval'], 'must be at least 100ms');
    if (hc !== undefined && svc.outlier?.enabled === false) report(['services', name, 'healthCheck'], 'health checks act through the outlier detector; do not disable outlier');
    const c = svc.concurrency;
    if (c !== undefined && (c.minLimit ?? 8) > (c.maxLimit ?? 2_000)) report(['services', name, 'concurrency', 'minLimit'], 'must not exceed maxLimit');
    if (c !== undefined && c.initialLimit !== undefined && (c.initialLimit < (c.minLimit ?? 8) || c.initialLimit > (c.maxLimit ?? 2_000))) {
      report(['services', name, 'concurrency', 'initialLimit'], 'must lie between minLimit and maxLimit');
    }
    if (ms(svc.outlier?.window, '5s') === 0) report(['services', name, 'outlier', 'window'], 'must be greater than 0s');
    if (ms(svc.retries?.budget?.window, '10s') === 0) report(['services', name, 'retries', 'budget', 'window'], 'must be greater than 0s');
    if (ms(svc.retries?.backoff?.base, '25ms') > ms(svc.retries?.backoff?.max, '250ms')) report(['services', name, 'retries', 'backoff', 'base'], 'must not exceed backoff.max');
  }
  const local = new Map<string, LocalServiceConfig>();
  for (const [name, l] of Object.entries(raw.local ?? {})) {
    local.set(name, {
      name,
      target: parseSocketAddress(l.target, { allowPortZero: false }) as SocketAddress,
      allow: l.allow ?? [],
      deny: l.deny ?? [],
      tcp: l.tcp ?? false,
      protocol: l.protocol ?? 'http1',
      timeoutMs: ms(l.timeout, '30s'),
      concurrency: normaliseConcurrency(l.concurrency),
    });
    for (const list of ['allow', 'deny'] as const) {
      (l[list] ?? []).forEach((pattern, i) => {
        const problem = identityPatternProblem(pattern);
        if (problem !== undefined) report(['local', name, list, i], problem);
      });
    }
  }
  if (raw.tls === undefined) {
    for (const [name, svc] of services) {
      svc.endpoints.forEach((e, i) => {
        if (e.identity !== undefined) report(['services', name, 'endpoints', i, 'identity'], 'an endpoint with an identity is reached over mTLS: configure tls (cert, key, ca)');
      });
    }
  }
  if (raw.inbound !== undefined && raw.tls === undefined) report(['inbound'], 'the inbound listener accepts mTLS only: configure tls (cert, key, ca)');
  if (raw.local !== undefined && Object.keys(raw.local).length > 0 && raw.inbound === undefined) report(['local'], 'local services are reached through the inbound listener: configure inbound');
  const admin = listenAddress(raw.admin?.listen, '127.0.0.1:9990');
  const outbound = listenAddress(raw.outbound?.listen, '127.0.0.1:4140');
  if (admin.port !== 0 && admin.port === outbound.port && admin.host === outbound.host) {
    report(['admin', 'listen'], `same address as outbound.listen (${formatSocketAddress(admin)})`);
  }
  // Off loopback, the outbound listener would be an open proxy for other hosts without a source list.
  if (!isLoopback(outbound.host) && raw.outbound?.allowFrom === undefined) {
    report(['outbound', 'listen'], `${formatSocketAddress(outbound)} is reachable from other hosts: set outbound.allowFrom to the callers' ranges (e.g. the node's pod CIDR)`);
  }
  const taken = new Map<string, string>([
    [formatSocketAddress(admin), 'admin.listen'],
    [formatSocketAddress(outbound), 'outbound.listen'],
  ]);
  for (const [name, svc] of services) {
    // Workers share a port by binding it each; only the outbound and inbound ports are resolved once for all.
    if (svc.tcp !== undefined && svc.tcp.listen.port === 0 && (raw.workers ?? 1) !== 1) {
      report(['services', name, 'tcp', 'listen'], 'port 0 (any free port) cannot be shared by several workers: give a fixed port or set workers: 1');
    }
    if (svc.tcp === undefined || svc.tcp.listen.port === 0) continue;
    const key = formatSocketAddress(svc.tcp.listen);
    const owner = taken.get(key);
    if (owner !== undefined) report(['services', name, 'tcp', 'listen'], `same address as ${owner} (${key})`);
    taken.set(key, `services.${name}.tcp.listen`);
  }
  return {
    source,
    node: { name: raw.node?.name ?? hostname(), zone: raw.node?.zone },
    log: { level: raw.log?.level ?? 'info' },
    admin: { listen: admin, maxConnections: raw.admin?.maxConnections ?? 64, allowHosts: (raw.admin?.allowHosts ?? []).map((h) => h.toLowerCase()) },
    outbound: {
      listen: outbound,
      maxConnections: raw.outbound?.maxConnections ?? 'auto',
      maxHeaderSizeBytes: bytes(raw.outbound?.maxHeaderSize, '16KiB'),
      headersTimeoutMs: ms(raw.outbound?.headersTimeout, '10s'),
      idleTimeoutMs: ms(raw.outbound?.idleTimeout, '60s'),
      allowFrom: raw.outbound?.allowFrom,
      // Per HTTP/2 connection: one caller's connection cannot hold the whole in-flight ceiling.
      http2MaxConcurrentStreams: raw.outbound?.http2?.maxConcurrentStreams ?? 100,
    },
    drainTimeoutMs: ms(raw.drainTimeout, '10s'),
    kubernetes: {
      apiServer: raw.kubernetes?.apiServer,
      tokenFile: raw.kubernetes?.tokenFile === undefined ? undefined : resolveFrom(baseDir, raw.kubernetes.tokenFile),
      caFile: raw.kubernetes?.caFile === undefined ? undefined : resolveFrom(baseDir, raw.kubernetes.caFile),
      nodeName: raw.kubernetes?.nodeName,
    },
    workers: raw.workers ?? 1,
    tls:
      raw.tls === undefined
        ? undefined
        : {
            cert: resolveFrom(baseDir, raw.tls.cert),
            key: resolveFrom(baseDir, raw.tls.key),
            ca: resolveFrom(baseDir, raw.tls.ca),
            minVersion: raw.tls.minVersion ?? 'TLSv1.3',
            expiryWarningMs: ms(raw.tls.expiryWarning, '24h'),
          },
    inbound:
      raw.inbound === undefined
        ? undefined
        : {
            listen: listenAddress(raw.inbound.listen, '0.0.0.0:4143'),
            maxConnections: raw.inbound.maxConnections ?? 10_000,
            handshakeTimeoutMs: ms(raw.inbound.handshakeTimeout, '5s'),
          },
    local,
    limits: { maxInFlight: raw.limits?.maxInFlight ?? 20_000 },
    services,
  };
}

function normaliseConcurrency(raw: RawService['concurrency']): ConcurrencySettings {
  return {
    adaptive: raw?.adaptive ?? false,
    initialLimit: raw?.initialLimit ?? 100,
    minLimit: raw?.minLimit ?? 8,
    maxLimit: raw?.maxLimit ?? 2_000,
    tolerance: raw?.tolerance ?? 1.15,
    windowMs: ms(raw?.window, '250ms'),
    queue: { size: raw?.queue?.size ?? 1_000, maxWaitMs: ms(raw?.queue?.maxWait, '1s') },
  };
}

/** Defaults: see src/feedback/outlier.ts and docs/design.md for why each is what it is. */
function normaliseOutlier(raw: RawOutlier): OutlierSettings {
  return {
    enabled: raw.enabled ?? true,
    consecutiveGatewayFailures: raw.consecutiveGatewayFailures ?? 5,
    consecutiveServerErrors: raw.consecutiveServerErrors ?? 5,
    failurePercentage: {
      threshold: raw.failurePercentage?.threshold ?? 0.2,
      minRequests: raw.failurePercentage?.minRequests ?? 5,
      minFailures: raw.failurePercentage?.minFailures ?? 3,
    },
    successRate: { stdevFactor: raw.successRate?.stdevFactor ?? 1.9, minRequests: raw.successRate?.minRequests ?? 50, minHosts: raw.successRate?.minHosts ?? 3 },
    latency: {
      factor: raw.latency?.factor ?? 3,
      percentile: raw.latency?.percentile ?? 0.9,
      floorMs: ms(raw.latency?.floor, '5ms'),
      minRequests: raw.latency?.minRequests ?? 10,
      minHosts: raw.latency?.minHosts ?? 2,
    },
    windowMs: ms(raw.window, '5s'),
    baseEjectionMs: ms(raw.baseEjection, '10s'),
    maxEjectionMs: ms(raw.maxEjection, '5m'),
    maxEjectionShare: raw.maxEjectionShare ?? 0.5,
    panicThreshold: raw.panicThreshold ?? 0.5,
    probationMs: ms(raw.probation, '10s'),
    returnRampMs: ms(raw.returnRamp, '10s'),
  };
}

function normaliseBalancer(raw: NonNullable<RawService['balancer']>, path: PathSegment[], report: Report): BalancerConfig {
  const algorithm = raw.algorithm ?? 'p2c-ewma';
  const hashOn = raw.hashOn?.header !== undefined ? { header: raw.hashOn.header.toLowerCase() } : raw.hashOn?.cookie !== undefined ? { cookie: raw.hashOn.cookie } : undefined;
  if (algorithm === 'ring-hash' && hashOn === undefined) report([...path, 'hashOn'], 'ring-hash needs hashOn: { header: NAME } or { cookie: NAME }');
  if (algorithm !== 'ring-hash' && hashOn !== undefined) report([...path, 'hashOn'], 'only used by algorithm: ring-hash');
  const decayMs = ms(raw.decay, '10s');
  if (decayMs === 0) report([...path, 'decay'], 'must be greater than 0s');
  return {
    algorithm,
    decayMs,
    defaultRttMs: ms(raw.defaultRtt, '30ms'),
    failurePenalty: raw.failurePenalty ?? 10,
    hashOn,
    zoneAware: raw.zoneAware ?? true,
    slowStart: {
      windowMs: ms(raw.slowStart?.window, '0s'),
      aggression: raw.slowStart?.aggression ?? 1,
      minWeight: raw.slowStart?.minWeight ?? 0.1,
    },
  };
}

function normaliseEndpoints(list: readonly RawEndpoint[], path: PathSegment[], report: Report): EndpointSpec[] {
  const seen = new Map<string, number>();
  const out: EndpointSpec[] = [];
  list.forEach((e, i) => {
    const addr = parseSocketAddress(e.address, { allowPortZero: false }) as SocketAddress;
    const address = formatSocketAddress(addr);
    const first = seen.get(address);
    if (first !== undefined) report([...path, i, 'address'], `duplicate of ${formatPath([...path, first])} (${address})`);
    seen.set(address, i);
    out.push({ address, host: addr.host, port: addr.port, zone: e.zone, weight: e.weight ?? 1, labels: { ...(e.labels ?? {}) }, identity: e.identity });
  });
  return out;
}

function resolveFrom(baseDir: string, file: string): string {
  return isAbsolute(file) ? file : resolve(baseDir, file);
}

function deepFreeze<T>(value: T): T {
  if (value instanceof Map) {
    for (const v of value.values()) deepFreeze(v);
    return Object.freeze(value);
  }
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
