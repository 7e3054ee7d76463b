/**
 * What tracing runs with: the config's `tracing` keys where written, else
 * the standard OTEL_* variables, else OpenTelemetry's defaults. Pure (the
 * environment is an argument), so the precedence is unit-tested.
 */
import type { TracingConfig } from '../config/types.ts';

export interface TracingSettings {
  readonly enabled: boolean;
  readonly sampleRatio: number;
  /** The OTLP/HTTP traces URL; undefined: the exporter's own (OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, else localhost:4318). */
  readonly endpoint: string | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  readonly serviceName: string;
  readonly maxQueueSize: number;
  readonly maxBatchSize: number;
  readonly scheduleDelayMs: number;
  readonly exportTimeoutMs: number;
}

/** OpenTelemetry's batch span processor defaults (OTEL_BSP_*). */
const BSP = { maxQueueSize: 2048, maxBatchSize: 512, scheduleDelayMs: 5000, exportTimeoutMs: 30000 };

export function tracingSettings(config: TracingConfig, env: Readonly<Record<string, string | undefined>>): TracingSettings {
  const number = (name: string, fallback: number, valid: (n: number) => boolean): number => {
    const text = env[name];
    const n = text === undefined || text.trim() === '' ? Number.NaN : Number(text);
    return Number.isFinite(n) && valid(n) ? n : fallback;
  };
  const positive = (n: number): boolean => n > 0;
  const ratio = (n: number): boolean => n >= 0 && n <= 1;
  return {
    enabled: config.enabled && env['OTEL_SDK_DISABLED']?.trim().toLowerCase() !== 'true',
    sampleRatio: config.sampleRatio ?? number('OTEL_TRACES_SAMPLER_ARG', 0.01, ratio),
    endpoint: config.endpoint,
    headers: config.headers,
    serviceName: env['OTEL_SERVICE_NAME'] ?? 'meshd',
    maxQueueSize: number('OTEL_BSP_MAX_QUEUE_SIZE', BSP.maxQueueSize, positive),
    maxBatchSize: Math.min(number('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', BSP.maxBatchSize, positive), number('OTEL_BSP_MAX_QUEUE_SIZE', BSP.maxQueueSize, positive)),
    scheduleDelayMs: number('OTEL_BSP_SCHEDULE_DELAY', BSP.scheduleDelayMs, positive),
    exportTimeoutMs: number('OTEL_BSP_EXPORT_TIMEOUT', BSP.exportTimeoutMs, positive),
  };
}
