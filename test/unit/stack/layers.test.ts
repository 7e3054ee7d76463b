/**
 * Each layer of the stack on its own, with a fake exchange (no sockets, no
 * codec) and an injected clock: what it does to the exchange, what it
 * answers, what it reports.
 */
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import type { Balancer } from '../../../src/balancer/balancer.ts';
import type { Endpoint } from '../../../src/balancer/endpoint.ts';
import { MeshError } from '../../../src/errors.ts';
import { GradientLimiter, DEFAULT_CONCURRENCY } from '../../../src/feedback/concurrency.ts';
import { createLogger } from '../../../src/log.ts';
import { RetryableStatus } from '../../../src/protocol/retryable-status.ts';
import { Admission, admissionLayer } from '../../../src/stack/admission.ts';
import { Attempts, type AttemptSink } from '../../../src/stack/attempt.ts';
import { deadlineLayer } from '../../../src/stack/deadline.ts';
import type { Exchange } from '../../../src/stack/exchange.ts';
import { compose, type Handler, type Layer } from '../../../src/stack/layer.ts';
import { balanceLayer, limitLayer, markOverloadLayer, observeLayer, respondLayer } from '../../../src/stack/layers.ts';
import type { ServiceRecorder } from '../../../src/stack/observer.ts';
import { retryLayer, type RetryPolicy } from '../../../src/stack/retry.ts';
import { RetryBudget } from '../../../src/stack/retry-budget.ts';
import { fakeExchange, type FakeRequest } from '../../helpers/fake-exchange.ts';
import { endpoint } from '../balancer/fixtures.ts';

const silent = createLogger('silent');

/** A clock the test moves. */
function manualClock(start = 0): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** Records every ServiceRecorder call. */
function recordingRecorder(): ServiceRecorder & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    started: () => calls.push('started'),
    ended: () => calls.push('ended'),
    finishedWithoutEndpoint: (status) => calls.push(`finishedWithoutEndpoint ${status}`),
    reset: (side) => calls.push(`reset ${side}`),
    retried: (reason) => calls.push(`retried ${reason}`),
    budgetExhausted: () => calls.push('budgetExhausted'),
    tcpConnection: () => calls.push('tcp'),
  };
}

/** Runs one layer around `terminal` on a fresh fake exchange. */
async function run(
  layer: Layer,
  terminal: Handler,
  request: FakeRequest = {},
  startedAt = 0,
): Promise<{ ex: Exchange; response: ReturnType<typeof fakeExchange>['response']; error: unknown }> {
  const { ex, response } = fakeExchange(request, startedAt);
  let error: unknown;
  try {
    await compose([layer], terminal)(ex);
  } catch (err) {
    error = err;
  }
  return { ex, response, error };
}

const answer =
  (status: number, body = 'ok'): Handler =>
  (ex) => {
    ex.response.start(status, { 'content-type': 'text/plain' });
    ex.response.end(body);
    return Promise.resolve();
  };

describe('observe layer', () => {
  it('counts the exchange and records its status against the endpoint that answered', async () => {
    const recorder = recordingRecorder();
    const e = endpoint('10.0.0.1:80');
    const finished: number[] = [];
    e.recorder.finished = (status: number) => finished.push(status);
    const { calls } = recorder;
    await run(
      observeLayer(recorder, () => 0),
      (ex) => {
        ex.attempt.endpoint = e;
        return answer(200)(ex);
      },
    );
    assert.deepEqual(calls, ['started', 'ended']);
    assert.deepEqual(finished, [200]);
  });

  it('records 499 for a caller that left before an answer, and a cut stream as an upstream reset', async () => {
    const recorder = recordingRecorder();
    await run(
      observeLayer(recorder, () => 0),
      (ex) => {
        ex.attempt.outcome = 'client_abort';
        return Promise.resolve();
      },
    );
    assert.deepEqual(recorder.calls, ['started', 'ended', 'finishedWithoutEndpoint 499', 'reset client']);
    const cut = recordingRecorder();
    await run(
      observeLayer(cut, () => 0),
      (ex) => {
        ex.response.start(200, {});
        return Promise.resolve(); // never ended
      },
    );
    assert.deepEqual(cut.calls, ['started', 'ended', 'finishedWithoutEndpoint 200', 'reset upstream']);
  });
});

describe('respond layer', () => {
  it("answers a MeshError with meshd's JSON error and its code", async () => {
    const { response, error } = await run(respondLayer('users', silent), () =>
      Promise.reject(new MeshError('no_endpoints', 'none left', { retryAfterSeconds: 1 })),
    );
    assert.equal(error, undefined, 'the layer answers; nothing propagates');
    assert.equal(response.status, 503);
    assert.equal(response.fields['x-meshd-error'], 'no_endpoints');
    assert.equal(response.fields['retry-after'], '1');
    assert.deepEqual(JSON.parse(response.body), { error: 'no_endpoints', message: 'none left' });
  });

  it('answers a gRPC caller with a gRPC status in trailers, and HEAD without a body', async () => {
    const grpc = await run(respondLayer('users', silent), () => Promise.reject(new MeshError('overloaded', 'busy')), {
      fields: { 'content-type': 'application/grpc' },
    });
    assert.equal(grpc.response.status, 200);
    assert.equal(grpc.response.trailerFields['grpc-status'], '14');
    const head = await run(respondLayer('users', silent), () => Promise.reject(new MeshError('forbidden', 'no')), { method: 'HEAD' });
    assert.equal(head.response.status, 403);
    assert.equal(head.response.body, '');
  });

  it('resets a response that already started, and hides unexpected errors behind internal', async () => {
    const started = await run(respondLayer('users', silent), (ex) => {
      ex.response.start(200, {});
      return Promise.reject(new MeshError('upstream_reset', 'gone'));
    });
    assert.equal(started.response.resets, 1);
    const bug = await run(respondLayer('users', silent), () => Promise.reject(new TypeError('a bug')));
    assert.equal(bug.response.status, 500);
    assert.equal(bug.response.fields['x-meshd-error'], 'internal');
  });
});

describe('limit layer', () => {
  it('sheds past the limit with overloaded and frees the place when an exchange ends', async () => {
    const count = { value: 0 };
    const layer = limitLayer('users', 1, count);
    let release: () => void = () => {};
    const holding = run(layer, () => new Promise<void>((r) => (release = r)));
    await Promise.resolve();
    assert.equal(count.value, 1);
    const refused = await run(layer, answer(200));
    assert.ok(refused.error instanceof MeshError && refused.error.code === 'overloaded' && refused.error.retryAfterSeconds === 1);
    release();
    await holding;
    assert.equal(count.value, 0);
    assert.equal((await run(layer, answer(200))).error, undefined);
  });
});

describe('deadline layer', () => {
  it("takes the tighter of the service timeout and the caller's, and cancels the exchange when it passes", async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const clock = manualClock(1_000);
      const layer = deadlineLayer(500, clock.now);
      const seen: { ex?: Exchange } = {};
      const pending = run(
        layer,
        (ex) => {
          seen.ex = ex;
          return new Promise<void>((resolve) => ex.onCancel({ cancel: () => resolve() }));
        },
        { fields: { 'grpc-timeout': '200m' } },
        1_000,
      );
      await Promise.resolve();
      assert.equal(seen.ex?.deadline, 1_200);
      clock.advance(200);
      mock.timers.tick(200);
      await pending;
      const cancelled = seen.ex.cancelled;
      assert.ok(cancelled instanceof MeshError && cancelled.code === 'upstream_timeout');
    } finally {
      mock.timers.reset();
    }
  });
});

describe('admission layer', () => {
  it('runs without a gate, queues past the limit, and sheds what waits too long', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const clock = manualClock();
      const limiter = new GradientLimiter({ ...DEFAULT_CONCURRENCY, initialLimit: 1, minLimit: 1 });
      const sheds: string[] = [];
      const gate = new Admission(limiter, { size: 1, maxWaitMs: 50 }, clock.now, { limitChanged: () => {}, shed: (reason) => sheds.push(reason) });
      assert.equal(
        (
          await run(
            admissionLayer(() => undefined, clock.now),
            answer(200),
          )
        ).error,
        undefined,
        'no limit configured: straight through',
      );
      const layer = admissionLayer(() => gate, clock.now);
      let release: () => void = () => {};
      const first = run(layer, () => new Promise<void>((r) => (release = r)));
      await Promise.resolve();
      const queued = run(layer, answer(200));
      const full = await run(layer, answer(200));
      assert.ok(full.error instanceof MeshError && full.error.code === 'overloaded', 'the queue holds one');
      mock.timers.tick(60);
      const timedOut = await queued;
      assert.ok(timedOut.error instanceof MeshError && timedOut.error.code === 'overloaded');
      assert.deepEqual(sheds, ['queue_full', 'queue_timeout']);
      release();
      await first;
      assert.equal(gate.inFlight, 0);
    } finally {
      mock.timers.reset();
    }
  });
});

describe('balance layer', () => {
  it('holds an attempt on the picked endpoint and reports its outcome, passing over the one to avoid', async () => {
    const a = endpoint('10.0.0.1:80');
    const b = endpoint('10.0.0.2:80');
    let next = 0;
    const order = [a, a, b];
    const balancer: Balancer = { algorithm: 'scripted', pick: () => order[next++ % order.length], setEndpoints: () => {} };
    const reports: string[] = [];
    const sink: AttemptSink = { attemptFinished: (e: Endpoint, outcome) => reports.push(`${e.address} ${outcome}`) };
    const attempts = new Attempts(
      'users',
      () => balancer,
      () => 10,
      () => 0,
      sink,
    );
    const layer = balanceLayer(attempts, undefined);
    const { ex, response } = fakeExchange();
    ex.avoid = a;
    await compose([layer], (inner) => {
      assert.equal(inner.attempt.endpoint, b, 'a was avoided');
      assert.equal(b.inFlight, 1);
      inner.attempt.outcome = 'http_5xx';
      inner.attempt.upstreamStatus = 503;
      return answer(503)(inner);
    })(ex);
    assert.equal(response.status, 503);
    assert.equal(b.inFlight, 0);
    assert.deepEqual(reports, ['10.0.0.2:80 http_5xx']);
  });

  it('answers no_endpoints when nothing is available, and overloaded when every endpoint is full', async () => {
    const none: Balancer = { algorithm: 'none', pick: () => undefined, setEndpoints: () => {} };
    const empty = await run(
      balanceLayer(
        new Attempts(
          'users',
          () => none,
          () => 10,
          () => 0,
          { attemptFinished: () => {} },
        ),
        undefined,
      ),
      answer(200),
    );
    assert.ok(empty.error instanceof MeshError && empty.error.code === 'no_endpoints');
    const full = endpoint('10.0.0.1:80');
    full.inFlight = 2;
    const one: Balancer = { algorithm: 'one', pick: () => full, setEndpoints: () => {} };
    const busy = await run(
      balanceLayer(
        new Attempts(
          'users',
          () => one,
          () => 2,
          () => 0,
          { attemptFinished: () => {} },
        ),
        undefined,
      ),
      answer(200),
    );
    assert.ok(busy.error instanceof MeshError && busy.error.code === 'overloaded');
  });
});

describe('mark-overload layer', () => {
  it("marks meshd's own overload answers so the calling host's meshd backs off", async () => {
    const { response, error } = await run(markOverloadLayer, () => Promise.reject(new MeshError('overloaded', 'busy')));
    assert.ok(error instanceof MeshError);
    assert.equal(response.fields['x-meshd-overloaded'], '1');
  });
});

describe('retry layer', () => {
  const policy: RetryPolicy = {
    attempts: 3,
    retryOn: new Set([503]),
    retryOnGrpc: new Set([14]),
    backoffBaseMs: 0,
    backoffMaxMs: 0,
    bufferLimitBytes: 8,
    perTryTimeoutMs: 0,
  };
  const budget = (): RetryBudget => new RetryBudget({ ratio: 1, minPerSecond: 100, windowMs: 10_000 });
  const layer = (p = policy, b = budget(), recorder = recordingRecorder()): Layer =>
    retryLayer(
      p,
      b,
      recorder,
      () => 0,
      () => 0,
    );

  /** An upstream that reads each attempt's body and fails the first `failures` attempts with `how`. */
  function upstream(failures: number, how: 'connect' | 'status'): { handler: Handler; bodies: string[] } {
    const bodies: string[] = [];
    const handler: Handler = async (ex) => {
      let text = '';
      const body = ex.attempt.body ?? ex.body;
      if (body !== undefined) for await (const chunk of body) text += (chunk as Buffer).toString();
      bodies.push(text);
      if (bodies.length <= failures) {
        if (how === 'connect') throw new MeshError('connect_failed', 'refused');
        if (ex.attempt.retryable?.(503, undefined) === true) throw new RetryableStatus('503');
      }
      return answer(bodies.length <= failures ? 503 : 200)(ex);
    };
    return { handler, bodies };
  }

  it('resends the whole body of a POST after a connect failure', async () => {
    const { handler, bodies } = upstream(1, 'connect');
    const { response, error } = await run(layer(), handler, { method: 'POST', body: ['ab', 'cd'] });
    assert.equal(error, undefined);
    assert.equal(response.status, 200);
    assert.deepEqual(bodies, ['abcd', 'abcd']);
  });

  it('retries a 503 for GET but relays it for a POST that may have been processed', async () => {
    const get = upstream(1, 'status');
    assert.equal((await run(layer(), get.handler)).response.status, 200);
    assert.equal(get.bodies.length, 2);
    const post = upstream(1, 'status');
    assert.equal((await run(layer(), post.handler, { method: 'POST', body: ['x'] })).response.status, 503);
    assert.equal(post.bodies.length, 1);
  });

  it('does not resend a body that outgrew its copy, nor retry past the budget', async () => {
    const big = upstream(1, 'connect');
    const overflowed = await run(layer(), big.handler, { method: 'PUT', body: ['0123456789'] });
    assert.ok(overflowed.error instanceof MeshError && overflowed.error.code === 'connect_failed');
    assert.equal(big.bodies.length, 1);
    const recorder = recordingRecorder();
    const spent = new RetryBudget({ ratio: 0, minPerSecond: 0, windowMs: 10_000 });
    const poor = upstream(1, 'connect');
    const refused = await run(layer(policy, spent, recorder), poor.handler);
    assert.ok(refused.error instanceof MeshError && refused.error.code === 'connect_failed');
    assert.ok(recorder.calls.includes('budgetExhausted'));
  });
});
