/**
 * The worker's side of a multi-worker feedback loop: samples are batched to
 * the supervisor, and the supervisor's updates are applied to the worker's
 * endpoints exactly as a single process applies its own decisions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Endpoint } from '../../../src/balancer/endpoint.ts';
import { FeedbackController } from '../../../src/feedback/controller.ts';
import type { AvailabilityUpdate } from '../../../src/feedback/loop.ts';
import { DEFAULT_OUTLIER } from '../../../src/feedback/outlier.ts';
import { RemoteFeedback } from '../../../src/feedback/remote.ts';
import { WorkerLink } from '../../../src/cluster/worker-link.ts';
import type { WorkerMessage } from '../../../src/cluster/protocol.ts';
import { createLogger } from '../../../src/log.ts';

const endpoint = (address: string, now = 0): Endpoint => {
  const [host, port] = address.split(':');
  return new Endpoint(
    { address, host: host!, port: Number(port), weight: 1, zone: undefined, labels: {}, identity: undefined },
    { close: async () => {} },
    { finished() {} },
    now,
  );
};

describe('worker feedback link', () => {
  it('sends queued samples in one message per flush, grouped by service', () => {
    const sent: WorkerMessage[] = [];
    const link = new WorkerLink((m) => sent.push(m));
    link.report('api', ['10.0.0.1:80', 'success', 3, 200, false]);
    link.report('api', ['10.0.0.2:80', 'http_5xx', 4, 503, false]);
    link.report('db', ['10.0.0.3:80', 'timeout', 900, 0, false]);
    assert.equal(sent.length, 0, 'nothing sent before the flush');
    link.flush();
    assert.deepEqual(sent, [
      {
        meshd: 'samples',
        batches: [
          [
            'api',
            [
              ['10.0.0.1:80', 'success', 3, 200, false],
              ['10.0.0.2:80', 'http_5xx', 4, 503, false],
            ],
          ],
          ['db', [['10.0.0.3:80', 'timeout', 900, 0, false]]],
        ],
      },
    ]);
    link.flush();
    assert.equal(sent.length, 1, 'an empty queue sends nothing');
  });

  it('applies availability and returns from the supervisor, and replays the latest state to a late subscriber without ramping again', () => {
    let now = 1_000;
    const link = new WorkerLink(() => {});
    const remote = new RemoteFeedback('api', link, () => now);
    const a = endpoint('10.0.0.1:80');
    const b = endpoint('10.0.0.2:80');
    remote.setEndpoints([a, b]);
    remote.start();
    const ejectB: AvailabilityUpdate = {
      endpoints: [
        { address: a.address, available: true, condition: 'active' },
        { address: b.address, available: false, condition: 'ejected' },
      ],
      returned: [],
      decidedAt: performance.timeOrigin + performance.now(),
    };
    link.deliver('api', ejectB);
    assert.equal(b.available, false);
    assert.equal(remote.condition(b.address), 'ejected');
    assert.ok(remote.lastDelayMs !== undefined && remote.lastDelayMs >= 0 && remote.lastDelayMs < 1_000);

    now = 5_000;
    link.deliver('api', {
      endpoints: [
        { address: a.address, available: true, condition: 'active' },
        { address: b.address, available: true, condition: 'probation' },
      ],
      returned: [{ address: b.address, rampMs: 2_000 }],
      decidedAt: performance.timeOrigin + performance.now(),
    });
    assert.equal(b.available, true);
    assert.equal(b.warmingSince, 5_000, 'slow start from the return');
    assert.equal(b.warmupMs, 2_000);

    // A service rebuilt by a reload subscribes again: same state, no second ramp.
    now = 6_000;
    const again = new RemoteFeedback('api', link, () => now);
    again.setEndpoints([a, b]);
    again.start();
    assert.equal(again.condition(b.address), 'probation');
    assert.equal(b.warmingSince, 5_000);
    remote.stop();
    again.stop();
  });

  it('reports each attempt to the link instead of deciding, and takes no health checks', () => {
    const reported: unknown[] = [];
    const remote = new RemoteFeedback('api', { report: (service, sample) => reported.push([service, sample]), subscribe: () => () => {} }, () => 0);
    const a = endpoint('10.0.0.1:80');
    remote.setEndpoints([a]);
    for (let i = 0; i < 50; i++) remote.observe(a, 'connect_failed', 1, 0, false);
    remote.health();
    assert.equal(reported.length, 50);
    assert.equal(a.available, true, 'a worker never ejects on its own');
  });

  it('the deciding controller publishes every change of availability with the returns', () => {
    const published: AvailabilityUpdate[] = [];
    let now = 0;
    const controller = new FeedbackController('api', { ...DEFAULT_OUTLIER, baseEjectionMs: 1_000 }, 500, {
      clock: () => now,
      log: createLogger('silent'),
      recorder: { decision() {} },
      tickMs: 250,
      publish: (u) => published.push(u),
    });
    const a = endpoint('10.0.0.1:80');
    const b = endpoint('10.0.0.2:80');
    controller.setEndpoints([a, b]);
    for (let i = 0; i < DEFAULT_OUTLIER.consecutiveGatewayFailures; i++) controller.observe(b, 'connect_failed', 1, 0, false);
    const ejected = published.at(-1);
    assert.deepEqual(
      ejected?.endpoints.find((e) => e.address === b.address),
      { address: b.address, available: false, condition: 'ejected' },
    );
    now = 1_500;
    controller.tick();
    const back = published.at(-1);
    assert.deepEqual(back?.returned, [{ address: b.address, rampMs: 500 }]);
    assert.equal(back.endpoints.find((e) => e.address === b.address)?.available, true);
  });
});
