/**
 * Normalises a service's traffic policy (./traffic-schema.ts): durations to
 * milliseconds, header names to lowercase, defaults from DEFAULTS, route
 * names filled in. Like ./normalise.ts it judges nothing.
 */
import { formatSocketAddress, parseSocketAddress, type SocketAddress } from './address.ts';
import { DEFAULTS } from './defaults.ts';
import type { RawAccessRule, RawCanary, RawFault, RawHeaderModifier, RawPathModifier, RawRateLimit, RawRouteRule, RawValueMatch } from './raw.ts';
import type { AccessRule, CanaryConfig, FaultSpec, HeaderModifier, PathModifier, RateLimitConfig, RouteRule, ValueMatch } from './types.ts';
import { parseDuration } from './units.ts';

const ms = (text: string | undefined, fallbackMs: number): number => (text === undefined ? fallbackMs : (parseDuration(text) as number));
const optionalMs = (text: string | undefined): number | undefined => (text === undefined ? undefined : parseDuration(text));

export function normaliseRoutes(raw: readonly RawRouteRule[] | undefined): RouteRule[] {
  const d = DEFAULTS.services.routes;
  return (raw ?? []).map((rule, i) => {
    const filter = <K extends 'requestHeaderModifier' | 'responseHeaderModifier' | 'requestMirror' | 'requestRedirect' | 'urlRewrite'>(key: K) =>
      rule.filters?.find((f) => f[key] !== undefined)?.[key];
    const mirror = filter('requestMirror');
    const redirect = filter('requestRedirect');
    const rewrite = filter('urlRewrite');
    return {
      name: rule.name ?? `rule-${i + 1}`,
      matches: (rule.matches ?? []).map((m) => ({
        path: m.path === undefined ? undefined : { type: m.path.type ?? 'PathPrefix', value: m.path.value },
        method: m.method,
        headers: (m.headers ?? []).map((h) => valueMatch(h, true)),
        queryParams: (m.queryParams ?? []).map((q) => valueMatch(q, false)),
        callers: m.callers ?? [],
      })),
      requestHeaders: headerModifier(filter('requestHeaderModifier')),
      responseHeaders: headerModifier(filter('responseHeaderModifier')),
      mirror: mirror === undefined ? undefined : { subset: { ...mirror.backendRef.subset }, percent: mirror.percent ?? d.mirrorPercent },
      redirect:
        redirect === undefined
          ? undefined
          : {
              scheme: redirect.scheme,
              hostname: redirect.hostname,
              path: pathModifier(redirect.path),
              port: redirect.port,
              statusCode: redirect.statusCode ?? d.redirectStatusCode,
            },
      rewrite: rewrite === undefined ? undefined : { hostname: rewrite.hostname, path: pathModifier(rewrite.path) },
      backendRefs: (rule.backendRefs ?? []).map((b) => ({ subset: { ...b.subset }, weight: b.weight ?? d.backendWeight })),
      timeoutMs: optionalMs(rule.timeouts?.request),
      backendTimeoutMs: optionalMs(rule.timeouts?.backendRequest),
      retry:
        rule.retry === undefined
          ? undefined
          : {
              // Gateway API counts retries; meshd counts attempts, the first included.
              attempts: (rule.retry.attempts ?? DEFAULTS.services.retries.attempts - 1) + 1,
              codes: rule.retry.codes ?? [...DEFAULTS.services.retries.retryOn],
              backoffMs: ms(rule.retry.backoff, DEFAULTS.services.retries.backoff.base),
            },
      rateLimit: normaliseRateLimit(rule.rateLimit),
    };
  });
}

export function normaliseAccess(raw: readonly RawAccessRule[] | undefined): AccessRule[] {
  return (raw ?? []).map((r) => ({ action: r.action, callers: r.callers ?? [], methods: r.methods ?? [], paths: r.paths ?? [] }));
}

export function normaliseRateLimit(raw: RawRateLimit | undefined): RateLimitConfig | undefined {
  if (raw === undefined) return undefined;
  return {
    requestsPerSecond: raw.requestsPerSecond,
    burst: raw.burst ?? Math.max(1, Math.ceil(raw.requestsPerSecond)),
    per: raw.per ?? DEFAULTS.services.rateLimit.per,
  };
}

/** One fault injection, from the config or from the admin API (same schema). */
export function normaliseFault(raw: RawFault): FaultSpec {
  const d = DEFAULTS.services.faults;
  const match = raw.match ?? {};
  return {
    name: raw.name,
    match: {
      subset: match.subset === undefined ? undefined : { ...match.subset },
      endpoint: match.endpoint === undefined ? undefined : formatSocketAddress(parseSocketAddress(match.endpoint, { allowPortZero: false }) as SocketAddress),
      route: match.route,
      headers: (match.headers ?? []).map((h) => valueMatch(h, true)),
      callers: match.callers ?? [],
    },
    delay: raw.delay === undefined ? undefined : { ms: ms(raw.delay.duration, 0), percent: raw.delay.percent ?? d.percent },
    abort: raw.abort === undefined ? undefined : { status: raw.abort.status, reset: raw.abort.reset === true, percent: raw.abort.percent ?? d.percent },
    durationMs: ms(raw.duration, 0),
  };
}

export function normaliseCanary(raw: RawCanary | undefined): CanaryConfig | undefined {
  if (raw === undefined) return undefined;
  const d = DEFAULTS.services.canary;
  return {
    stable: { ...raw.stable },
    canary: { ...raw.canary },
    steps: raw.steps ?? [...d.steps],
    dwellMs: ms(raw.dwell, d.dwell),
    minRequests: raw.minRequests ?? d.minRequests,
    maxSuccessRateDrop: raw.maxSuccessRateDrop ?? d.maxSuccessRateDrop,
    maxLatencyRatio: raw.maxLatencyRatio ?? d.maxLatencyRatio,
    latencyPercentile: raw.latencyPercentile ?? d.latencyPercentile,
    latencyFloorMs: ms(raw.latencyFloor, d.latencyFloor),
  };
}

function pathModifier(raw: RawPathModifier | undefined): PathModifier | undefined {
  if (raw === undefined) return undefined;
  // A missing value is reported by the rules; normalising does not judge.
  return raw.type === 'ReplaceFullPath' ? { type: raw.type, value: raw.replaceFullPath ?? '' } : { type: raw.type, value: raw.replacePrefixMatch ?? '' };
}

function valueMatch(raw: RawValueMatch, header: boolean): ValueMatch {
  return { name: header ? raw.name.toLowerCase() : raw.name, type: raw.type ?? 'Exact', value: raw.value };
}

function headerModifier(raw: RawHeaderModifier | undefined): HeaderModifier | undefined {
  if (raw === undefined) return undefined;
  const lower = (list: { name: string; value: string }[] | undefined) => (list ?? []).map((f) => ({ name: f.name.toLowerCase(), value: f.value }));
  return { set: lower(raw.set), add: lower(raw.add), remove: (raw.remove ?? []).map((n) => n.toLowerCase()) };
}
