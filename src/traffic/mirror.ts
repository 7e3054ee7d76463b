/**
 * Gateway API's RequestMirror: a share of a route's requests is also sent
 * to a subset, with the response thrown away. The caller never waits for
 * it: a request without a body is mirrored at once, one with a body once
 * the caller's body has passed through (a copy of up to `bufferLimit`
 * bytes is kept; a larger body is not mirrored). Mirrors in flight are
 * bounded per route, their own deadline is the route's, and a mirror that
 * fails is counted and forgotten. The mirrored request names the service
 * with "-shadow" appended to its authority, as Envoy does, so the receiver
 * can tell shadow traffic apart. Its attempts report to the endpoints'
 * statistics and the feedback loop like any other.
 */
import { PassThrough, Readable } from 'node:stream';
import type { Clock, Random } from '../clock.ts';
import { forwardHttp } from '../proxy/http-forwarder.ts';
import { deadlineLayer } from '../stack/deadline.ts';
import { Exchange, type RequestHead, type ResponseSink } from '../stack/exchange.ts';
import { compose, type Handler, type Layer } from '../stack/layer.ts';
import { balanceLayer } from '../stack/layers.ts';
import type { AttemptPicker } from '../stack/attempt.ts';
import type { Logger } from '../log.ts';

export type MirrorResult = 'completed' | 'failed' | 'skipped_busy' | 'skipped_body_too_large';

export interface MirrorRecorder {
  mirrored(service: string, result: MirrorResult): void;
}

export interface MirrorSpec {
  readonly service: string;
  readonly percent: number;
  readonly target: AttemptPicker;
  readonly timeoutMs: number;
  readonly bufferLimitBytes: number;
  readonly maxInFlight: number;
  readonly clock: Clock;
  readonly random: Random;
  readonly recorder: MirrorRecorder;
  readonly log: Logger;
}

export function mirrorLayer(spec: MirrorSpec): Layer {
  const send: Handler = compose([deadlineLayer(spec.timeoutMs, spec.clock), balanceLayer(spec.target, undefined)], forwardHttp);
  let inFlight = 0;
  const fire = (head: RequestHead, body: readonly Buffer[] | undefined): void => {
    if (inFlight >= spec.maxInFlight) {
      spec.recorder.mirrored(spec.service, 'skipped_busy');
      return;
    }
    inFlight++;
    const ex = new Exchange(shadowHead(head), body === undefined ? undefined : Readable.from(body), new DiscardingSink(), spec.clock());
    send(ex)
      .then(
        () => spec.recorder.mirrored(spec.service, ex.response.status >= 500 ? 'failed' : 'completed'),
        (err: unknown) => {
          spec.recorder.mirrored(spec.service, 'failed');
          spec.log.debug({ service: spec.service, err: (err as Error).message }, 'mirrored request failed');
        },
      )
      .finally(() => inFlight--);
  };
  return (next) => (ex) => {
    if (spec.percent < 100 && spec.random() * 100 >= spec.percent) return next(ex);
    const head = ex.head;
    if (ex.body === undefined) {
      fire(head, undefined);
      return next(ex);
    }
    // Tee the caller's body: the request streams on unchanged; the copy goes out once complete.
    const source = ex.body;
    const copy: Buffer[] = [];
    let size = 0;
    let overflowed = false;
    const tee = new PassThrough();
    source.on('data', (chunk: Buffer) => {
      if (!overflowed) {
        size += chunk.length;
        if (size > spec.bufferLimitBytes) {
          overflowed = true;
          copy.length = 0;
        } else copy.push(chunk);
      }
    });
    source.on('end', () => {
      if (overflowed) spec.recorder.mirrored(spec.service, 'skipped_body_too_large');
      else fire(head, copy);
    });
    source.on('error', (err) => tee.destroy(err));
    source.pipe(tee);
    ex.body = tee;
    return next(ex);
  };
}

/** The request as the mirror sends it: the same, with "-shadow" on the authority. */
function shadowHead(head: RequestHead): RequestHead {
  const host = head.authority ?? head.field('host') ?? head.field(':authority') ?? 'unknown';
  const colon = host.lastIndexOf(':');
  const shadow = colon > host.lastIndexOf(']') && colon !== -1 ? `${host.slice(0, colon)}-shadow${host.slice(colon)}` : `${host}-shadow`;
  return {
    method: head.method,
    path: head.path,
    authority: shadow,
    hasBody: head.hasBody,
    remoteAddress: head.remoteAddress,
    fields: head.fields,
    field: (name) => head.field(name),
  };
}

/** Where a mirror's response goes: nowhere, read at full speed so the connection can be reused. */
class DiscardingSink implements ResponseSink {
  started = false;
  ended = false;
  closed = false;
  status = 0;
  readonly grpcStatus = undefined;
  setField(): void {}
  start(status: number): void {
    this.started = true;
    this.status = status;
  }
  write(): boolean {
    return true;
  }
  onceDrain(resume: () => void): void {
    resume();
  }
  trailers(): void {}
  end(): void {
    this.ended = true;
  }
  reset(): void {
    this.closed = true;
  }
}
