/**
 * A request body forwarded as it arrives, with a copy kept for a retry.
 * Waiting for the whole body before the first byte goes upstream would hang
 * every exchange whose caller waits for an answer before it sends the rest
 * (gRPC client-streaming and bidi calls, a chunked upload that reads the
 * response): so the first attempt streams at once, and the bytes it took are
 * kept up to a limit. A later attempt replays the copy, then goes on with
 * the live body where the previous one stopped. Once the body outgrows the
 * limit the copy is dropped and the exchange can no longer be retried
 * (Envoy's retry buffer works the same way).
 *
 * The source is read only when the current attempt asks for more, so
 * backpressure reaches the caller; an attempt that was given up stops
 * reading at once (its stream is destroyed with the attempt).
 */
import { Readable } from 'node:stream';

export class ReplayableBody {
  private readonly source: AsyncIterator<unknown>;
  private readonly limit: number;
  /** Chunks from index `base` on: every chunk while replayable, afterwards only those not yet sent. */
  private chunks: Buffer[] = [];
  private base = 0;
  private size = 0;
  private overflowed = false;
  private ended = false;
  private failure: Error | undefined = undefined;
  private pulling: Promise<void> | undefined;
  /** The attempt whose stream may read; earlier ones stop. */
  private current = 0;

  constructor(source: AsyncIterable<unknown>, limit: number) {
    this.source = source[Symbol.asyncIterator]();
    this.limit = limit;
  }

  /** Whether a new attempt could resend every byte sent so far. */
  get replayable(): boolean {
    return !this.overflowed;
  }

  /** Whether the caller's body has been read to its end. */
  get complete(): boolean {
    return this.ended;
  }

  /**
   * The body for a new attempt: the copy from the start, then the live rest. Only the newest
   * stream reads; call it again for a retry only while `replayable`.
   */
  stream(): Readable {
    if (this.overflowed && this.current > 0) throw new Error('the request body outgrew its replay copy');
    const attempt = ++this.current;
    return Readable.from(this.read(attempt), { objectMode: false, highWaterMark: 1 });
  }

  private async *read(attempt: number): AsyncGenerator<Buffer> {
    let position = 0;
    for (;;) {
      if (attempt !== this.current) return;
      const index = position - this.base;
      const chunk = this.chunks[index];
      if (chunk !== undefined) {
        position++;
        // Without a copy, a chunk is dropped once sent.
        if (this.overflowed) this.release(position);
        yield chunk;
        continue;
      }
      if (this.failure !== undefined) throw this.failure;
      if (this.ended) return;
      await this.pull();
    }
  }

  /** Reads one chunk from the caller; concurrent calls share the read in flight. */
  private pull(): Promise<void> {
    this.pulling ??= this.source.next().then(
      ({ value, done }) => {
        this.pulling = undefined;
        if (done === true) {
          this.ended = true;
          return;
        }
        const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
        this.chunks.push(chunk);
        this.size += chunk.length;
        if (!this.overflowed && this.size > this.limit) this.overflowed = true;
      },
      (err: unknown) => {
        this.pulling = undefined;
        this.failure = err instanceof Error ? err : new Error('the request body failed');
      },
    );
    return this.pulling;
  }

  private release(upTo: number): void {
    const drop = upTo - this.base;
    if (drop <= 0) return;
    this.chunks = this.chunks.slice(drop);
    this.base = upTo;
  }
}
