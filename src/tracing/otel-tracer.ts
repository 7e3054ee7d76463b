/**
 * Hop spans with OpenTelemetry's JavaScript SDK, exported over OTLP/HTTP
 * (JSON) to a collector. Head sampling is parent-based: a caller's sampled
 * flag is kept, a new trace is sampled by `sampleRatio`; every span is
 * recorded, so that one which ends in an error is exported even when not
 * sampled. Export is batched and bounded (./span-queue.ts): a slow or dead
 * collector drops spans (counted), never slows or fails a request. The
 * standard OTEL_* variables are honoured: OTEL_EXPORTER_OTLP_(TRACES_)
 * ENDPOINT and _HEADERS and _TIMEOUT (read by the exporter),
 * OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER_ARG,
 * OTEL_BSP_* (the queue) and OTEL_SDK_DISABLED.
 */
import { SpanKind, SpanStatusCode, TraceFlags, ROOT_CONTEXT, type Span, type TextMapGetter } from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { detectResources, resourceAttributesEnvDetector, resourceFromAttributes, serviceNameEnvDetector } from '@opentelemetry/resources';
import {
  createAlwaysRecordSampler,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type ReadableSpan,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import type { TracingSettings } from './settings.ts';
import type { Logger } from '../log.ts';
import type { RequestHead } from '../stack/exchange.ts';
import type { HopOutcome, HopTracer, TracedHop } from '../stack/trace.ts';
import { SpanQueue, type SpanQueueRecorder } from './span-queue.ts';

const propagator = new W3CTraceContextPropagator();
const headGetter: TextMapGetter<RequestHead> = {
  keys: () => ['traceparent', 'tracestate'],
  get: (head, key) => head.field(key),
};

/** Hands ended spans to the queue: sampled ones, and every error. */
class ExportWhenSampledOrFailed implements SpanProcessor {
  private readonly queue: SpanQueue<ReadableSpan>;
  constructor(queue: SpanQueue<ReadableSpan>) {
    this.queue = queue;
  }
  onStart(): void {}
  onEnd(span: ReadableSpan): void {
    const sampled = (span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0;
    if (sampled || span.status.code === SpanStatusCode.ERROR) this.queue.push(span);
  }
  forceFlush(): Promise<void> {
    return this.queue.flush();
  }
  shutdown(): Promise<void> {
    return this.queue.close();
  }
}

export class OtelHopTracer implements HopTracer {
  private readonly provider: TracerProvider;
  private readonly tracer: ReturnType<TracerProvider['getTracer']>;

  constructor(config: TracingSettings, node: string, log: Logger, recorder: SpanQueueRecorder) {
    const exporter = new OTLPTraceExporter({
      ...(config.endpoint === undefined ? {} : { url: config.endpoint }),
      ...(config.headers === undefined ? {} : { headers: config.headers }),
      timeoutMillis: config.exportTimeoutMs,
    });
    const queue = new SpanQueue<ReadableSpan>(
      {
        maxQueueSize: config.maxQueueSize,
        maxBatchSize: config.maxBatchSize,
        scheduleDelayMs: config.scheduleDelayMs,
        exportTimeoutMs: config.exportTimeoutMs,
      },
      (batch) =>
        new Promise((resolve) =>
          exporter.export(batch, (result) => resolve(result.code === ExportResultCode.SUCCESS ? undefined : (result.error?.message ?? 'export failed'))),
        ),
      log,
      recorder,
    );
    const attributes = { 'service.name': config.serviceName, 'service.instance.id': node, 'host.name': node };
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over meshd's defaults.
    const resource = resourceFromAttributes(attributes).merge(detectResources({ detectors: [resourceAttributesEnvDetector, serviceNameEnvDetector] }));
    this.provider = new TracerProvider({
      resource,
      sampler: createAlwaysRecordSampler(new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) })),
      spanProcessors: [new ExportWhenSampledOrFailed(queue)],
    });
    this.tracer = this.provider.getTracer('meshd');
  }

  start(kind: 'outbound' | 'inbound', service: string, head: RequestHead, caller: string | undefined): TracedHop {
    const parent = propagator.extract(ROOT_CONTEXT, head, headGetter);
    const span = this.tracer.startSpan(
      `${kind} ${service}`,
      {
        kind: kind === 'outbound' ? SpanKind.CLIENT : SpanKind.SERVER,
        attributes: {
          'http.request.method': head.method,
          'url.path': head.path.split('?')[0] ?? '/',
          'meshd.service': service,
          ...(caller === undefined ? {} : { 'meshd.caller': caller }),
        },
      },
      parent,
    );
    // A caller's tracestate travels on unchanged (upstream fields are copied); the span inherits it too.
    return new Hop(span);
  }

  /** Exports what is queued (shutdown). */
  async close(): Promise<void> {
    await this.provider.shutdown();
  }
}

class Hop implements TracedHop {
  readonly traceparent: string;
  readonly traceId: string;
  private readonly span: Span;

  constructor(span: Span) {
    this.span = span;
    const ctx = span.spanContext();
    this.traceId = ctx.traceId;
    this.traceparent = `00-${ctx.traceId}-${ctx.spanId}-0${(ctx.traceFlags & TraceFlags.SAMPLED).toString(16)}`;
  }

  event(name: string, attributes?: Readonly<Record<string, string | number>>): void {
    this.span.addEvent(name, attributes);
  }

  end(outcome: HopOutcome): void {
    const span = this.span;
    span.setAttribute('http.response.status_code', outcome.status);
    span.setAttribute('meshd.retries', outcome.retries);
    if (outcome.endpoint !== undefined) span.setAttribute('server.address', outcome.endpoint);
    if (outcome.route !== undefined) span.setAttribute('meshd.route', outcome.route);
    if (outcome.fault !== undefined) span.setAttribute('meshd.fault', outcome.fault);
    if (outcome.errorCode !== undefined) span.setAttribute('meshd.error', outcome.errorCode);
    if (outcome.status >= 500 || (outcome.errorCode !== undefined && outcome.status !== 499)) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.errorCode ?? `HTTP ${outcome.status}` });
    }
    span.end();
  }
}
