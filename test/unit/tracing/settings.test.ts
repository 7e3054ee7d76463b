import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tracingSettings } from '../../../src/tracing/settings.ts';

const config = { enabled: true, sampleRatio: undefined, endpoint: undefined, headers: undefined };

describe('tracing settings', () => {
  it('takes OpenTelemetry’s defaults when nothing is set', () => {
    assert.deepEqual(tracingSettings(config, {}), {
      enabled: true,
      sampleRatio: 0.01,
      endpoint: undefined,
      headers: undefined,
      serviceName: 'meshd',
      maxQueueSize: 2048,
      maxBatchSize: 512,
      scheduleDelayMs: 5000,
      exportTimeoutMs: 30000,
    });
  });

  it('honours the OTEL_* variables, and the config wins over them', () => {
    const env = {
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_SERVICE_NAME: 'edge',
      OTEL_BSP_MAX_QUEUE_SIZE: '100',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '500',
      OTEL_BSP_SCHEDULE_DELAY: '250',
      OTEL_BSP_EXPORT_TIMEOUT: '1000',
    };
    const s = tracingSettings(config, env);
    assert.equal(s.sampleRatio, 0.25);
    assert.equal(s.serviceName, 'edge');
    assert.equal(s.maxQueueSize, 100);
    // A batch never exceeds the queue.
    assert.equal(s.maxBatchSize, 100);
    assert.equal(s.scheduleDelayMs, 250);
    assert.equal(s.exportTimeoutMs, 1000);
    assert.equal(tracingSettings({ ...config, sampleRatio: 1 }, env).sampleRatio, 1);
  });

  it('ignores malformed variables, and OTEL_SDK_DISABLED turns tracing off', () => {
    const s = tracingSettings(config, { OTEL_TRACES_SAMPLER_ARG: '7', OTEL_BSP_MAX_QUEUE_SIZE: 'lots', OTEL_BSP_SCHEDULE_DELAY: '-1' });
    assert.equal(s.sampleRatio, 0.01);
    assert.equal(s.maxQueueSize, 2048);
    assert.equal(s.scheduleDelayMs, 5000);
    assert.equal(tracingSettings(config, { OTEL_SDK_DISABLED: 'TRUE' }).enabled, false);
    assert.equal(tracingSettings({ ...config, enabled: false }, {}).enabled, false);
  });
});
