/**
 * Gateway API's RequestHeaderModifier and ResponseHeaderModifier: set
 * (replace every value), add (append a value) and remove, by
 * case-insensitive name. The request side rewrites the field list the
 * forwarder sends (a WebSocket handshake's too); the response side edits the
 * fields at the status line, whoever answers (the endpoint or meshd).
 */
import type { HeaderModifier } from '../config/types.ts';
import type { Layer } from '../stack/layer.ts';
import type { HeaderObject } from '../proxy/headers.ts';
import type { RequestHead, ResponseSink } from '../stack/exchange.ts';

/** A modifier made ready once per route: the names it drops and touches, so that a request only copies fields. */
class CompiledModifier {
  readonly set: HeaderModifier['set'];
  readonly add: HeaderModifier['add'];
  /** Removed or replaced: the request's own values are not kept. */
  readonly drop: ReadonlySet<string>;
  /** Every name whose value differs from the request's. */
  readonly touched: ReadonlySet<string>;

  constructor(modifier: HeaderModifier) {
    this.set = modifier.set;
    this.add = modifier.add;
    this.drop = new Set([...modifier.remove, ...modifier.set.map((f) => f.name)]);
    this.touched = new Set([...this.drop, ...modifier.add.map((f) => f.name)]);
  }

  /** The value of a touched `name` after the modifier: the kept value, then set and added ones, as in the field list. */
  value(head: RequestHead, name: string): string | undefined {
    const values: string[] = [];
    const kept = this.drop.has(name) ? undefined : head.field(name);
    if (kept !== undefined) values.push(kept);
    for (const f of this.set) if (f.name === name) values.push(f.value);
    for (const f of this.add) if (f.name === name) values.push(f.value);
    return values.length === 0 ? undefined : values.join(', ');
  }
}

/** The request head with `modifier` applied to its fields; everything else (and untouched fields) read through. */
function modifiedHead(head: RequestHead, modifier: CompiledModifier): RequestHead {
  const fields: string[] = [];
  const source = head.fields;
  for (let i = 0; i + 1 < source.length; i += 2) {
    const name = source[i] as string;
    if (!modifier.drop.has(name.toLowerCase())) fields.push(name, source[i + 1] as string);
  }
  for (const f of modifier.set) fields.push(f.name, f.value);
  for (const f of modifier.add) fields.push(f.name, f.value);
  return {
    method: head.method,
    path: head.path,
    authority: head.authority,
    hasBody: head.hasBody,
    remoteAddress: head.remoteAddress,
    fields,
    field: (name: string) => (modifier.touched.has(name) ? modifier.value(head, name) : head.field(name)),
  };
}

/** Applies `modifier` to a response's fields as its status line goes out. */
function modifiedFields(
  fields: Readonly<Record<string, string | string[] | undefined>>,
  modifier: CompiledModifier,
): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const [name, value] of Object.entries(fields)) if (!modifier.drop.has(name.toLowerCase())) out[name.toLowerCase()] = value;
  for (const f of modifier.set) out[f.name] = f.value;
  for (const f of modifier.add) {
    const current = out[f.name];
    out[f.name] = current === undefined ? f.value : [...(Array.isArray(current) ? current : [current]), f.value];
  }
  return out;
}

class ModifyingSink implements ResponseSink {
  private readonly inner: ResponseSink;
  private readonly modifier: CompiledModifier;
  private readonly early: Record<string, string> = {};

  constructor(inner: ResponseSink, modifier: CompiledModifier) {
    this.inner = inner;
    this.modifier = modifier;
  }
  get started(): boolean {
    return this.inner.started;
  }
  get ended(): boolean {
    return this.inner.ended;
  }
  get closed(): boolean {
    return this.inner.closed;
  }
  get status(): number {
    return this.inner.status;
  }
  get bytesSent(): number | undefined {
    return this.inner.bytesSent;
  }
  get grpcStatus(): number | undefined {
    return this.inner.grpcStatus;
  }
  setField(name: string, value: string): void {
    // Held until the status line, so that the modifier sees (and may remove) meshd's own fields too.
    this.early[name.toLowerCase()] = value;
  }
  start(status: number, fields: Readonly<Record<string, string | string[] | undefined>>, reason?: string): void {
    this.inner.start(status, modifiedFields({ ...this.early, ...fields }, this.modifier), reason);
  }
  write(chunk: Buffer): boolean {
    return this.inner.write(chunk);
  }
  onceDrain(resume: () => void): void {
    this.inner.onceDrain(resume);
  }
  trailers(fields: Readonly<Record<string, string>>): void {
    this.inner.trailers(fields);
  }
  end(body?: string): void {
    this.inner.end(body);
  }
  reset(): void {
    this.inner.reset();
  }
}

/** A WebSocket handshake's upstream fields with a route's RequestHeaderModifier applied (made per handshake: they are few). */
export function modifiedRequestFields(fields: HeaderObject, modifier: HeaderModifier | undefined): HeaderObject {
  return modifier === undefined ? fields : modifiedFields(fields, new CompiledModifier(modifier));
}

export function headerModifierLayer(requestModifier: HeaderModifier | undefined, responseModifier: HeaderModifier | undefined): Layer {
  const request = requestModifier === undefined ? undefined : new CompiledModifier(requestModifier);
  const response = responseModifier === undefined ? undefined : new CompiledModifier(responseModifier);
  return (next) => (ex) => {
    if (request !== undefined) ex.head = modifiedHead(ex.head, request);
    if (response !== undefined) ex.response = new ModifyingSink(ex.response, response);
    return next(ex);
  };
}
