/**
 * The JSON Schema of meshd's YAML config. It is the single description of
 * what a config may contain: unknown keys are errors everywhere, and every
 * duration and size must carry its unit (see ./units.ts).
 */

import { LOCAL_TRAFFIC_PROPERTIES, SERVICE_TRAFFIC_PROPERTIES } from './traffic-schema.ts';

const duration = { type: 'string', format: 'duration' } as const;
const size = { type: 'string', format: 'size' } as const;
const listen = { type: 'string', format: 'listen-address' } as const;
/** Source ranges allowed to connect to a listener that leaves loopback; `node-pod-cidrs` stands for this Kubernetes node's pod ranges. */
const cidrList = { type: 'array', minItems: 1, items: { type: 'string', format: 'source-range' } } as const;

/** Adaptive concurrency, for outbound services and local services alike. */
const concurrency = {
  type: 'object',
  additionalProperties: false,
  properties: {
    adaptive: { type: 'boolean' },
    initialLimit: { type: 'integer', minimum: 1 },
    minLimit: { type: 'integer', minimum: 1 },
    maxLimit: { type: 'integer', minimum: 1 },
    tolerance: { type: 'number', minimum: 1 },
    window: duration,
    queue: { type: 'object', additionalProperties: false, properties: { size: { type: 'integer', minimum: 0 }, maxWait: duration } },
  },
} as const;

const endpoint = {
  type: 'object',
  additionalProperties: false,
  required: ['address'],
  properties: {
    address: { type: 'string', format: 'endpoint-address' },
    zone: { type: 'string', minLength: 1 },
    weight: { type: 'integer', minimum: 1, maximum: 1000 },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    identity: { type: 'string', pattern: '^spiffe://[^/]+/.+$' },
  },
} as const;

export const ENDPOINT_LIST_SCHEMA = { type: 'array', items: endpoint } as const;

/** The endpoints file of the file discovery source: `{ endpoints: [...] }`. */
export const ENDPOINTS_FILE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['endpoints'],
  properties: { endpoints: ENDPOINT_LIST_SCHEMA },
} as const;

const service = {
  type: 'object',
  additionalProperties: false,
  properties: {
    endpoints: ENDPOINT_LIST_SCHEMA,
    endpointsFile: { type: 'string', minLength: 1 },
    discovery: {
      type: 'object',
      additionalProperties: false,
      properties: {
        dns: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 253 },
            type: { enum: ['SRV', 'A', 'AAAA', 'A+AAAA'] },
            port: { type: 'integer', minimum: 1, maximum: 65535 },
            servers: { type: 'array', minItems: 1, items: { type: 'string', format: 'endpoint-address' } },
            minTtl: duration,
            maxTtl: duration,
            negativeTtl: duration,
            timeout: duration,
          },
        },
        consul: {
          type: 'object',
          additionalProperties: false,
          properties: {
            address: { type: 'string', pattern: '^https?://' },
            service: { type: 'string', minLength: 1 },
            tag: { type: 'string', minLength: 1 },
            datacenter: { type: 'string', minLength: 1 },
            tokenFile: { type: 'string', minLength: 1 },
            wait: duration,
          },
        },
        kubernetes: {
          type: 'object',
          additionalProperties: false,
          required: ['service'],
          properties: {
            service: { type: 'string', minLength: 1 },
            namespace: { type: 'string', minLength: 1 },
            port: {
              anyOf: [
                { type: 'string', minLength: 1 },
                { type: 'integer', minimum: 1, maximum: 65535 },
              ],
            },
            kubeconfig: { type: 'string', minLength: 1 },
            idleTimeout: duration,
          },
        },
        acceptEmptyAfter: duration,
      },
    },
    protocol: { enum: ['http1', 'h2c'] },
    balancer: {
      type: 'object',
      additionalProperties: false,
      properties: {
        algorithm: { enum: ['p2c-ewma', 'least-request', 'round-robin', 'weighted-round-robin', 'ring-hash'] },
        decay: duration,
        defaultRtt: duration,
        failurePenalty: { type: 'number', minimum: 0, maximum: 1000 },
        hashOn: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          maxProperties: 1,
          properties: { header: { type: 'string', minLength: 1 }, cookie: { type: 'string', minLength: 1 } },
        },
        zoneAware: { type: 'boolean' },
        slowStart: {
          type: 'object',
          additionalProperties: false,
          properties: {
            window: duration,
            aggression: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
            minWeight: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
          },
        },
      },
    },
    timeout: duration,
    connectTimeout: duration,
    tcp: {
      type: 'object',
      additionalProperties: false,
      required: ['listen'],
      properties: { listen, idleTimeout: duration, maxConnections: { type: 'integer', minimum: 1 }, allowFrom: cidrList },
    },
    retries: {
      type: 'object',
      additionalProperties: false,
      properties: {
        attempts: { type: 'integer', minimum: 1, maximum: 10 },
        retryOn: { type: 'array', uniqueItems: true, items: { type: 'integer', minimum: 500, maximum: 599 } },
        retryOnGrpc: { type: 'array', uniqueItems: true, items: { type: 'integer', minimum: 1, maximum: 16 } },
        backoff: { type: 'object', additionalProperties: false, properties: { base: duration, max: duration } },
        budget: {
          type: 'object',
          additionalProperties: false,
          properties: { ratio: { type: 'number', minimum: 0, maximum: 10 }, minPerSecond: { type: 'number', minimum: 0 }, window: duration },
        },
        bufferLimit: size,
        perTryTimeout: duration,
      },
    },
    healthCheck: {
      type: 'object',
      additionalProperties: false,
      properties: {
        http: { type: 'object', additionalProperties: false, required: ['path'], properties: { path: { type: 'string', pattern: '^/' } } },
        tcp: { type: 'boolean' },
        interval: duration,
        timeout: duration,
        unhealthyThreshold: { type: 'integer', minimum: 1 },
        healthyThreshold: { type: 'integer', minimum: 1 },
      },
    },
    concurrency,
    outlier: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        consecutiveGatewayFailures: { type: 'integer', minimum: 1 },
        consecutiveServerErrors: { type: 'integer', minimum: 1 },
        failurePercentage: {
          type: 'object',
          additionalProperties: false,
          properties: {
            threshold: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
            minRequests: { type: 'integer', minimum: 1 },
            minFailures: { type: 'integer', minimum: 1 },
          },
        },
        successRate: {
          type: 'object',
          additionalProperties: false,
          properties: {
            stdevFactor: { type: 'number', exclusiveMinimum: 0 },
            minRequests: { type: 'integer', minimum: 1 },
            minHosts: { type: 'integer', minimum: 2 },
          },
        },
        latency: {
          type: 'object',
          additionalProperties: false,
          properties: {
            factor: { type: 'number', minimum: 1 },
            percentile: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
            floor: duration,
            minRequests: { type: 'integer', minimum: 1 },
            minHosts: { type: 'integer', minimum: 2 },
          },
        },
        window: duration,
        baseEjection: duration,
        maxEjection: duration,
        maxEjectionShare: { type: 'number', minimum: 0, maximum: 1 },
        panicThreshold: { type: 'number', minimum: 0, maximum: 1 },
        probation: duration,
        returnRamp: duration,
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxInFlight: { type: 'integer', minimum: 1 },
        maxPendingPerEndpoint: { type: 'integer', minimum: 0 },
      },
    },
    pool: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxConnections: { type: 'integer', minimum: 1, maximum: 65536 },
        idleTimeout: duration,
      },
    },
    ...SERVICE_TRAFFIC_PROPERTIES,
  },
} as const;

/** What `kubernetes.mesh.service` may set for every discovered Service: a service's settings, without its endpoints. */
const meshServiceSettings = {
  ...service,
  properties: Object.fromEntries(
    Object.entries(service.properties).filter(
      ([key]) => !['endpoints', 'endpointsFile', 'discovery', 'tcp', ...Object.keys(SERVICE_TRAFFIC_PROPERTIES)].includes(key),
    ),
  ),
};

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    node: {
      type: 'object',
      additionalProperties: false,
      properties: { name: { type: 'string', minLength: 1 }, zone: { type: 'string', minLength: 1 } },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      properties: {
        level: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] },
        // One structured line per exchange, sampled (errors always).
        access: {
          type: 'object',
          additionalProperties: false,
          properties: { enabled: { type: 'boolean' }, sampleRatio: { type: 'number', minimum: 0, maximum: 1 } },
        },
      },
    },
    tracing: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        sampleRatio: { type: 'number', minimum: 0, maximum: 1 },
        endpoint: { type: 'string', pattern: '^https?://' },
        headers: { type: 'object', additionalProperties: { type: 'string', pattern: '^[^\\r\\n]*$' } },
      },
    },
    admin: {
      type: 'object',
      additionalProperties: false,
      properties: {
        listen,
        maxConnections: { type: 'integer', minimum: 1 },
        // Host names the admin API answers to besides IP literals and localhost (DNS rebinding).
        allowHosts: { type: 'array', items: { type: 'string', pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$' } },
        // Who besides loopback may change things (fault injections, canary commands).
        allowChangesFrom: { type: 'array', minItems: 1, items: { type: 'string', format: 'source-range' } },
      },
    },
    // A scrape-only listener (GET /metrics and nothing else) that Prometheus on other hosts may reach.
    metrics: {
      type: 'object',
      additionalProperties: false,
      required: ['listen'],
      properties: { listen, allowFrom: cidrList },
    },
    outbound: {
      type: 'object',
      additionalProperties: false,
      properties: {
        listen,
        maxConnections: { anyOf: [{ const: 'auto' }, { type: 'integer', minimum: 1 }] },
        maxHeaderSize: size,
        headersTimeout: duration,
        idleTimeout: duration,
        allowFrom: cidrList,
        http2: {
          type: 'object',
          additionalProperties: false,
          properties: { maxConcurrentStreams: { type: 'integer', minimum: 1, maximum: 2147483647 } },
        },
      },
    },
    inbound: {
      type: 'object',
      additionalProperties: false,
      properties: { listen, maxConnections: { type: 'integer', minimum: 1 }, handshakeTimeout: duration },
    },
    tls: {
      type: 'object',
      additionalProperties: false,
      required: ['cert', 'key', 'ca'],
      properties: {
        cert: { type: 'string', minLength: 1 },
        key: { type: 'string', minLength: 1 },
        ca: { type: 'string', minLength: 1 },
        minVersion: { enum: ['TLSv1.2', 'TLSv1.3'] },
        expiryWarning: duration,
      },
    },
    local: {
      type: 'object',
      propertyNames: { pattern: '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['target'],
        properties: {
          target: { type: 'string', format: 'endpoint-address' },
          allow: { type: 'array', items: { type: 'string', pattern: '^spiffe://' } },
          deny: { type: 'array', items: { type: 'string', pattern: '^spiffe://' } },
          tcp: { type: 'boolean' },
          protocol: { enum: ['http1', 'h2c'] },
          timeout: duration,
          concurrency,
          ...LOCAL_TRAFFIC_PROPERTIES,
        },
      },
    },
    kubernetes: {
      type: 'object',
      additionalProperties: false,
      properties: {
        apiServer: { type: 'string', pattern: '^https://' },
        tokenFile: { type: 'string', minLength: 1 },
        caFile: { type: 'string', minLength: 1 },
        nodeName: { type: 'string', minLength: 1 },
        kubeconfig: { type: 'string', minLength: 1 },
        mesh: {
          type: 'object',
          additionalProperties: false,
          properties: {
            trustDomain: { type: 'string', pattern: '^[a-z0-9.-]+$' },
            clusterDomain: { type: 'string', pattern: '^[a-z0-9.-]+$' },
            meshdNamespace: { type: 'string', minLength: 1 },
            meshdSelector: { type: 'string', minLength: 1 },
            inboundPort: { type: 'integer', minimum: 1, maximum: 65535 },
            idleTimeout: duration,
            // HTTPRoutes whose parentRef is a Service become its routes (needs list/watch on httproutes).
            httpRoutes: { type: 'boolean' },
            // Settings of every Service meshd discovers (timeouts, retries, balancer, outlier…).
            service: meshServiceSettings,
            authorization: {
              type: 'object',
              propertyNames: { pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?$' },
              additionalProperties: {
                type: 'object',
                additionalProperties: false,
                properties: {
                  allow: { type: 'array', items: { type: 'string', pattern: '^spiffe://' } },
                  deny: { type: 'array', items: { type: 'string', pattern: '^spiffe://' } },
                },
              },
            },
          },
        },
      },
    },
    drainTimeout: duration,
    // Where meshd keeps what must outlive a restart (canary rollouts); relative to the config file.
    stateDir: { type: 'string', minLength: 1 },
    workers: { anyOf: [{ const: 'auto' }, { type: 'integer', minimum: 1, maximum: 256 }] },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: { maxInFlight: { type: 'integer', minimum: 1 } },
    },
    services: {
      type: 'object',
      propertyNames: { pattern: '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$' },
      additionalProperties: service,
    },
  },
} as const;
