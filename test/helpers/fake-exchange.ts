/**
 * A fake exchange for unit tests of the stack's layers: a request head from a
 * plain object of fields, a response sink that records what it was told, and
 * a body stream when one is given. No sockets, no codec.
 */
import { grpcStatusOf } from '../../src/protocol/grpc.ts';
import { Readable } from 'node:stream';
import { Exchange, type FieldReader, type RequestHead, type ResponseSink } from '../../src/stack/exchange.ts';

/** Fields by lowercase name, as a FieldReader. */
export function fields(values: Record<string, string>): FieldReader {
  return { field: (name) => values[name] };
}

export interface FakeRequest {
  method?: string;
  path?: string;
  authority?: string;
  fields?: Record<string, string>;
  /** A body that arrives in these chunks. */
  body?: string[];
}

export class FakeResponse implements ResponseSink {
  started = false;
  ended = false;
  closed = false;
  status = 200;
  reason: string | undefined;
  readonly fields: Record<string, string | string[] | undefined> = {};
  readonly trailerFields: Record<string, string> = {};
  readonly chunks: Buffer[] = [];
  body = '';
  resets = 0;
  /** false makes write() ask for a drain. */
  writable = true;
  private drains: (() => void)[] = [];

  setField(name: string, value: string): void {
    if (this.started) throw new Error('fields after the start');
    this.fields[name] = value;
  }
  start(status: number, fields: Readonly<Record<string, string | string[] | undefined>>, reason?: string): void {
    if (this.started) throw new Error('started twice');
    this.started = true;
    this.status = status;
    this.reason = reason;
    Object.assign(this.fields, fields);
  }
  write(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return this.writable;
  }
  onceDrain(resume: () => void): void {
    this.drains.push(resume);
  }
  drain(): void {
    this.writable = true;
    for (const d of this.drains.splice(0)) d();
  }
  trailers(fields: Readonly<Record<string, string>>): void {
    Object.assign(this.trailerFields, fields);
  }
  get grpcStatus(): number | undefined {
    return grpcStatusOf(this.trailerFields);
  }
  end(body?: string): void {
    this.ended = true;
    this.body = Buffer.concat(this.chunks).toString() + (body ?? '');
  }
  reset(): void {
    this.resets++;
    this.closed = true;
  }
  /** The caller goes away. */
  hangUp(): void {
    this.closed = true;
  }
}

/** A request head from a plain object of fields (lowercase names), from 127.0.0.1. */
export function fakeHead(request: FakeRequest = {}): RequestHead {
  const values = request.fields ?? {};
  return {
    method: request.method ?? 'GET',
    path: request.path ?? '/',
    authority: request.authority,
    fields: Object.entries(values).flat(),
    field: (name) => values[name],
    hasBody: request.body !== undefined,
    remoteAddress: '127.0.0.1',
  };
}

export function fakeExchange(request: FakeRequest = {}, startedAt = 0): { ex: Exchange; response: FakeResponse } {
  const head = fakeHead(request);
  const response = new FakeResponse();
  const body =
    request.body === undefined
      ? undefined
      : Readable.from(
          request.body.map((c) => Buffer.from(c)),
          { objectMode: false },
        );
  return { ex: new Exchange(head, body, response, startedAt), response };
}
