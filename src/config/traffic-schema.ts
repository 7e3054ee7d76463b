/**
 * The JSON Schema of a service's traffic policy: routes written as Gateway
 * API HTTPRoute rules (matches, filters, backendRefs, timeouts, retry), plus
 * meshd's access rules, rate limits, fault injections and canary. Kept apart
 * from ./schema.ts because the admin API validates fault injections with the
 * same fragment.
 */

const duration = { type: 'string', format: 'duration' } as const;
const percent = { type: 'number', minimum: 0, maximum: 100 } as const;
const labels = { type: 'object', minProperties: 1, additionalProperties: { type: 'string' } } as const;
const identityPatterns = { type: 'array', minItems: 1, items: { type: 'string', pattern: '^spiffe://' } } as const;
/** An HTTP field name (RFC 9110 token). */
const fieldName = { type: 'string', pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", maxLength: 256 } as const;
const fieldValue = { type: 'string', maxLength: 4096, pattern: '^[^\\r\\n\\x00]*$' } as const;

/** HTTPHeaderMatch and HTTPQueryParamMatch: a name, a value, Exact (default) or RegularExpression. */
const valueMatch = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'value'],
  properties: { type: { enum: ['Exact', 'RegularExpression'] }, name: fieldName, value: { type: 'string', maxLength: 1024 } },
} as const;

const headerModifier = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    set: {
      type: 'array',
      items: { type: 'object', additionalProperties: false, required: ['name', 'value'], properties: { name: fieldName, value: fieldValue } },
    },
    add: {
      type: 'array',
      items: { type: 'object', additionalProperties: false, required: ['name', 'value'], properties: { name: fieldName, value: fieldValue } },
    },
    remove: { type: 'array', items: fieldName },
  },
} as const;

/** Gateway API's PreciseHostname (RFC 1123, lowercase, no wildcard). */
const hostname = {
  type: 'string',
  maxLength: 253,
  pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
} as const;

/** HTTPPathModifier: the whole path, or the prefix the rule's PathPrefix match matched. */
const pathModifier = {
  type: 'object',
  additionalProperties: false,
  required: ['type'],
  properties: {
    type: { enum: ['ReplaceFullPath', 'ReplacePrefixMatch'] },
    replaceFullPath: { type: 'string', maxLength: 1024, pattern: '^/[^\\s?#]*$' },
    // Empty is allowed: "/foo/bar" with prefix "/foo" becomes "/bar".
    replacePrefixMatch: { type: 'string', maxLength: 1024, pattern: '^(/[^\\s?#]*)?$' },
  },
} as const;

/** A subset of the service's endpoints by labels, with a weight (HTTPBackendRef with meshd's `subset`). */
const backendRef = {
  type: 'object',
  additionalProperties: false,
  required: ['subset'],
  properties: { subset: labels, weight: { type: 'integer', minimum: 0, maximum: 1_000_000 } },
} as const;

/** Token bucket: `requestsPerSecond` refill, `burst` capacity; per service (route) or per caller identity. */
export const RATE_LIMIT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['requestsPerSecond'],
  properties: {
    requestsPerSecond: { type: 'number', exclusiveMinimum: 0, maximum: 10_000_000 },
    burst: { type: 'integer', minimum: 1, maximum: 10_000_000 },
    per: { enum: ['service', 'caller'] },
  },
} as const;

const routeMatch = {
  type: 'object',
  additionalProperties: false,
  properties: {
    path: {
      type: 'object',
      additionalProperties: false,
      required: ['value'],
      properties: { type: { enum: ['Exact', 'PathPrefix', 'RegularExpression'] }, value: { type: 'string', minLength: 1, maxLength: 1024 } },
    },
    method: { enum: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] },
    headers: { type: 'array', maxItems: 16, items: valueMatch },
    queryParams: { type: 'array', maxItems: 16, items: valueMatch },
    // meshd's own: the caller's verified identity (SPIFFE patterns).
    callers: identityPatterns,
  },
} as const;

const filter = {
  type: 'object',
  additionalProperties: false,
  required: ['type'],
  properties: {
    type: { enum: ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite'] },
    requestHeaderModifier: headerModifier,
    responseHeaderModifier: headerModifier,
    requestMirror: {
      type: 'object',
      additionalProperties: false,
      required: ['backendRef'],
      properties: { backendRef: { type: 'object', additionalProperties: false, required: ['subset'], properties: { subset: labels } }, percent },
    },
    requestRedirect: {
      type: 'object',
      additionalProperties: false,
      properties: {
        scheme: { enum: ['http', 'https'] },
        hostname,
        path: pathModifier,
        port: { type: 'integer', minimum: 1, maximum: 65535 },
        statusCode: { enum: [301, 302, 303, 307, 308] },
      },
    },
    urlRewrite: { type: 'object', additionalProperties: false, minProperties: 1, properties: { hostname, path: pathModifier } },
  },
} as const;

/** One HTTPRoute rule as meshd writes it (also what Kubernetes HTTPRoutes are translated into). */
export const ROUTE_RULE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' },
    matches: { type: 'array', maxItems: 64, items: routeMatch },
    filters: { type: 'array', maxItems: 16, items: filter },
    backendRefs: { type: 'array', maxItems: 16, items: backendRef },
    timeouts: { type: 'object', additionalProperties: false, properties: { request: duration, backendRequest: duration } },
    retry: {
      type: 'object',
      additionalProperties: false,
      properties: {
        attempts: { type: 'integer', minimum: 0, maximum: 10 },
        codes: { type: 'array', uniqueItems: true, items: { type: 'integer', minimum: 400, maximum: 599 } },
        backoff: duration,
      },
    },
    rateLimit: RATE_LIMIT_SCHEMA,
  },
} as const;

/** Istio AuthorizationPolicy's shape, flattened: deny rules first, then at least one allow rule must match when any exist. */
export const ACCESS_SCHEMA = {
  type: 'array',
  maxItems: 256,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['action'],
    properties: {
      action: { enum: ['allow', 'deny'] },
      callers: identityPatterns,
      methods: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[A-Z]+$' } },
      // Exact paths, or prefixes ending in "*".
      paths: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^/' } },
    },
  },
} as const;

/** One fault injection: what it selects, what it does, and for how long (every injection expires). */
export const FAULT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'duration'],
  properties: {
    name: { type: 'string', pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' },
    match: {
      type: 'object',
      additionalProperties: false,
      properties: {
        subset: labels,
        endpoint: { type: 'string', format: 'endpoint-address' },
        route: { type: 'string', minLength: 1 },
        headers: { type: 'array', maxItems: 16, items: valueMatch },
        callers: identityPatterns,
      },
    },
    delay: { type: 'object', additionalProperties: false, required: ['duration'], properties: { duration, percent } },
    abort: {
      type: 'object',
      additionalProperties: false,
      properties: { status: { type: 'integer', minimum: 400, maximum: 599 }, reset: { const: true }, percent },
    },
    duration,
  },
} as const;

const canary = {
  type: 'object',
  additionalProperties: false,
  required: ['stable', 'canary'],
  properties: {
    stable: labels,
    canary: labels,
    steps: { type: 'array', minItems: 1, maxItems: 20, items: { type: 'number', exclusiveMinimum: 0, maximum: 100 } },
    dwell: duration,
    minRequests: { type: 'integer', minimum: 1 },
    maxSuccessRateDrop: { type: 'number', minimum: 0, maximum: 1 },
    maxLatencyRatio: { type: 'number', minimum: 1 },
    latencyPercentile: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
    latencyFloor: duration,
  },
} as const;

/** The keys a service's traffic policy adds to `services.NAME`. */
export const SERVICE_TRAFFIC_PROPERTIES = {
  routes: { type: 'array', maxItems: 256, items: ROUTE_RULE_SCHEMA },
  access: ACCESS_SCHEMA,
  rateLimit: RATE_LIMIT_SCHEMA,
  faults: { type: 'array', maxItems: 64, items: FAULT_SCHEMA },
  canary,
} as const;

/** What a local (inbound) service adds: access rules and a rate limit, judged on the verified caller. */
export const LOCAL_TRAFFIC_PROPERTIES = {
  access: ACCESS_SCHEMA,
  rateLimit: RATE_LIMIT_SCHEMA,
} as const;
