import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULTS } from '../../../src/config/defaults.ts';
import { DEFAULT_CONFIG_SOURCE } from '../../../src/config/default.ts';
import { defaultConfig, parseConfig } from '../../../src/config/load.ts';
import { DEFAULT_OUTLIER } from '../../../src/feedback/outlier.ts';

function isDeepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  return Object.isFrozen(value) && Object.values(value).every(isDeepFrozen);
}

describe('config defaults', () => {
  it('cannot be changed at run time', () => {
    assert.ok(isDeepFrozen(DEFAULTS));
  });

  it('fill every absent key of an empty config', () => {
    const config = parseConfig('services: { s: {} }\nlocal: { web: { target: 127.0.0.1:8080 } }\ninbound: {}\ntls: { cert: c, key: k, ca: a }\n', 't', '/');
    const s = config.services.get('s');
    const web = config.local.get('web');
    assert.ok(s && web);
    assert.equal(config.outbound.headersTimeoutMs, DEFAULTS.outbound.headersTimeout);
    assert.equal(config.outbound.maxHeaderSizeBytes, DEFAULTS.outbound.maxHeaderSize);
    assert.equal(config.admin.maxConnections, DEFAULTS.admin.maxConnections);
    assert.equal(config.inbound?.handshakeTimeoutMs, DEFAULTS.inbound.handshakeTimeout);
    assert.equal(config.tls?.expiryWarningMs, DEFAULTS.tls.expiryWarning);
    assert.equal(s.timeoutMs, DEFAULTS.services.timeout);
    assert.equal(s.retries.bufferLimitBytes, DEFAULTS.services.retries.bufferLimit);
    assert.deepEqual(s.retries.retryOn, DEFAULTS.services.retries.retryOn);
    assert.equal(s.balancer.decayMs, DEFAULTS.services.balancer.decay);
    assert.equal(web.timeoutMs, DEFAULTS.local.timeout);
    assert.equal(web.concurrency.windowMs, DEFAULTS.local.concurrency.window);
  });

  it('take the outlier detector’s own defaults, so its numbers are written once', () => {
    const outlier = parseConfig('services: { s: {} }', 't', '/').services.get('s')?.outlier;
    assert.ok(outlier);
    const { enabled, returnRampMs, ...detector } = outlier;
    assert.deepEqual(detector, DEFAULT_OUTLIER);
    assert.equal(enabled, DEFAULTS.services.outlier.enabled);
    assert.equal(returnRampMs, DEFAULTS.services.outlier.returnRamp);
  });

  it('make the embedded default config the same as an empty file', () => {
    assert.deepEqual(defaultConfig(), parseConfig('', DEFAULT_CONFIG_SOURCE, process.cwd()));
  });
});
