/**
 * Hop spans with OpenTelemetry's JavaScript SDK, exported over OTLP/HTTP
 * (JSON) to a collector. Head sampling is parent-based: a caller's sampled
 * flag is kept, a new trace is sampled by `sampleRatio`. An unsampled hop
 * holds only its ids and start, and becomes a span only if it ends in an
 * error, which is exported whatever the sampling. Export is batched and bounded (./span-queue.ts): a slow or dead
 * collector drops spans (counted), never slows or fails a request. The
 * standard OTEL_* variables are honoured: OTEL_EXPORTER_OTLP_(TRACES_)
 * ENDPOINT and _HEADERS and _TIMEOUT (read by the exporter),
 * OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER_ARG,
 * OTEL_BSP_* (the queue) and OTEL_SDK_DISABLED.
 */
import { parseSocketAddress } from '../config/address.ts';
import { judgedStatus } from '../protocol/grpc.ts';
import { SpanKind, SpanStatusCode, TraceFlags, ROOT_CONTEXT, trace, type Attributes, type Span, type TextMapGetter } from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { detectResources, resourceAttributesEnvDetector, resourceFromAttributes, serviceNameEnvDetector } from '@opentelemetry/resources';
import {
  AlwaysOnSampler,
  createAlwaysRecordSampler,
  ParentBasedSampler,
  RandomIdGenerator,
  TracerProvider,
  type ReadableSpan,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import type { TracingSettings } from './settings.ts';
import type { Logger } from '../log.ts';
import type { FieldReader } from '../stack/exchange.ts';
import type { HopOutcome, HopStart, HopTracer, TracedHop } from '../stack/trace.ts';
import { SpanQueue, type SpanQueueRecorder } from './span-queue.ts';

const propagator = new W3CTraceContextPropagator();
const fieldGetter: TextMapGetter<FieldReader> = {
  keys: () => ['traceparent', 'tracestate'],
  get: (fields, key) => fields.field(key),
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
  private readonly ratio: number;
  private readonly ids = new RandomIdGenerator();
  /** Set around a late span's creation so that it keeps the ids its hop already sent upstream. */
  private presetIds: { traceId: string; spanId: string } | undefined;

  constructor(config: TracingSettings, node: string, log: Logger, recorder: SpanQueueRecorder) {
    this.ratio = config.sampleRatio;
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
      // meshd decides sampling itself (start()); a span the SDK sees was either sampled or failed.
      sampler: createAlwaysRecordSampler(new ParentBasedSampler({ root: new AlwaysOnSampler() })),
      spanProcessors: [new ExportWhenSampledOrFailed(queue)],
      idGenerator: {
        generateTraceId: () => this.presetIds?.traceId ?? this.ids.generateTraceId(),
        generateSpanId: () => this.presetIds?.spanId ?? this.ids.generateSpanId(),
      },
    });
    this.tracer = this.provider.getTracer('meshd');
  }

  /**
   * A sampled hop gets an SDK span at once. An unsampled one only gets ids (sent upstream as its
   * traceparent) and keeps its start and events: if it ends in an error, an SDK span is made then,
   * with the same ids and start time, and exported; otherwise it costs next to nothing.
   */
  start(hop: HopStart): TracedHop {
    const parent = hop.fields === undefined ? ROOT_CONTEXT : propagator.extract(ROOT_CONTEXT, hop.fields, fieldGetter);
    const parentSpan = trace.getSpanContext(parent);
    const sampled = parentSpan === undefined ? this.ratio >= 1 || Math.random() < this.ratio : (parentSpan.traceFlags & TraceFlags.SAMPLED) !== 0;
    const name = `${hop.kind} ${hop.service}`;
    const attributes: Attributes = { 'meshd.service': hop.service };
    if (hop.method !== undefined) attributes['http.request.method'] = hop.method;
    if (hop.path !== undefined) attributes['url.path'] = hop.path.split('?')[0] ?? '/';
    if (hop.caller !== undefined) attributes['meshd.caller'] = hop.caller;
    // OTel's names: a WebSocket tunnel is an upgraded HTTP request; raw TCP has only its transport.
    if (hop.protocol === 'websocket') attributes['network.protocol.name'] = 'websocket';
    else if (hop.protocol === 'tcp') attributes['network.transport'] = 'tcp';
    const options = { kind: hop.kind === 'outbound' ? SpanKind.CLIENT : SpanKind.SERVER, attributes };
    // The caller's tracestate goes on as parsed (bounded as W3C allows), and only with its trace.
    const tracestate = parentSpan?.traceState?.serialize() || undefined;
    if (sampled) return new SampledHop(this.tracer.startSpan(name, options, parent), tracestate);
    const traceId = parentSpan?.traceId ?? this.ids.generateTraceId();
    const spanId = this.ids.generateSpanId();
    return new UnsampledHop(traceId, spanId, tracestate, (outcome, events, startTime) => {
      this.presetIds = { traceId, spanId };
      try {
        const span = this.tracer.startSpan(name, { ...options, startTime }, parent);
        for (const e of events) span.addEvent(e.name, e.attributes, e.time);
        finish(span, outcome);
      } finally {
        this.presetIds = undefined;
      }
    });
  }

  /** Exports what is queued (shutdown). */
  async close(): Promise<void> {
    await this.provider.shutdown();
  }
}

/** Whether a hop's outcome is an error (exported whatever the sampling). */
function failed(outcome: HopOutcome): boolean {
  const status = outcome.status ?? 0;
  // A gRPC answer is judged by its grpc-status (its HTTP status is 200 whatever happened).
  return judgedStatus(status, outcome.grpcStatus) >= 500 || (outcome.errorCode !== undefined && status !== 499);
}

/** Sets the outcome's attributes and status on an SDK span and ends it. */
function finish(span: Span, outcome: HopOutcome): void {
  if (outcome.status !== undefined) span.setAttribute('http.response.status_code', outcome.status);
  if (outcome.grpcStatus !== undefined) span.setAttribute('rpc.grpc.status_code', outcome.grpcStatus);
  span.setAttribute('meshd.retries', outcome.retries);
  if (outcome.bytesSent !== undefined) span.setAttribute('meshd.bytes_sent', outcome.bytesSent);
  if (outcome.bytesReceived !== undefined) span.setAttribute('meshd.bytes_received', outcome.bytesReceived);
  if (outcome.endpoint !== undefined) {
    // OTel keeps host and port apart: "10.0.0.5:8080" is server.address 10.0.0.5 and server.port 8080.
    const address = parseSocketAddress(outcome.endpoint, { allowPortZero: false });
    if (typeof address === 'string') span.setAttribute('server.address', outcome.endpoint);
    else span.setAttributes({ 'server.address': address.host, 'server.port': address.port });
  }
  if (outcome.route !== undefined) span.setAttribute('meshd.route', outcome.route);
  if (outcome.fault !== undefined) span.setAttribute('meshd.fault', outcome.fault);
  if (outcome.errorCode !== undefined) span.setAttribute('meshd.error', outcome.errorCode);
  if (failed(outcome)) {
    const what = outcome.grpcStatus !== undefined && outcome.grpcStatus !== 0 ? `grpc-status ${String(outcome.grpcStatus)}` : `HTTP ${String(outcome.status)}`;
    span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.errorCode ?? what });
  }
  span.end();
}

class SampledHop implements TracedHop {
  readonly traceparent: string;
  readonly tracestate: string | undefined;
  readonly traceId: string;
  private readonly span: Span;

  constructor(span: Span, tracestate: string | undefined) {
    this.span = span;
    const ctx = span.spanContext();
    this.traceId = ctx.traceId;
    this.traceparent = `00-${ctx.traceId}-${ctx.spanId}-01`;
    this.tracestate = tracestate;
  }

  event(name: string, attributes?: Readonly<Record<string, string | number>>): void {
    this.span.addEvent(name, attributes);
  }

  end(outcome: HopOutcome): void {
    finish(this.span, outcome);
  }
}

interface HeldEvent {
  readonly name: string;
  readonly attributes: Readonly<Record<string, string | number>> | undefined;
  readonly time: number;
}

class UnsampledHop implements TracedHop {
  readonly traceparent: string;
  readonly tracestate: string | undefined;
  readonly traceId: string;
  private readonly startTime = Date.now();
  private events: HeldEvent[] | undefined;
  private readonly late: (outcome: HopOutcome, events: readonly HeldEvent[], startTime: number) => void;

  constructor(
    traceId: string,
    spanId: string,
    tracestate: string | undefined,
    late: (outcome: HopOutcome, events: readonly HeldEvent[], startTime: number) => void,
  ) {
    this.traceId = traceId;
    this.traceparent = `00-${traceId}-${spanId}-00`;
    this.tracestate = tracestate;
    this.late = late;
  }

  event(name: string, attributes?: Readonly<Record<string, string | number>>): void {
    (this.events ??= []).push({ name, attributes, time: Date.now() });
  }

  end(outcome: HopOutcome): void {
    if (failed(outcome)) this.late(outcome, this.events ?? [], this.startTime);
  }
}
