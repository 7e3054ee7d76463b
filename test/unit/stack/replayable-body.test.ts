/**
 * The replayable request body: the first attempt reads the caller's body as
 * it arrives; a retry replays the copy and continues live; past the limit
 * the copy is gone and the body is no longer replayable.
 */
import assert from 'node:assert/strict';
import { PassThrough, type Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { ReplayableBody } from '../../../src/stack/replayable-body.ts';

/** Reads until `length` characters arrived (resolves as soon as they are there; chunks may merge). */
async function take(stream: Readable, length: number): Promise<string> {
  let text = '';
  const reader = stream[Symbol.asyncIterator]();
  while (text.length < length) {
    const { value, done } = (await reader.next()) as { value: Buffer; done?: boolean };
    if (done === true) break;
    text += value.toString();
  }
  return text;
}

async function all(stream: Readable): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += (chunk as Buffer).toString();
  return text;
}

describe('replayable request body', () => {
  it('hands each chunk on as it arrives, before the body ends', async () => {
    const source = new PassThrough();
    const body = new ReplayableBody(source, 1024);
    const first = body.stream();
    source.write('a');
    assert.equal(await take(first, 1), 'a', 'the first chunk arrives while the caller still sends');
    source.write('b');
    source.end();
    assert.equal(await all(first), 'b');
    assert.ok(body.complete && body.replayable);
  });

  it('replays what an abandoned attempt sent, then continues with the live body', async () => {
    const source = new PassThrough();
    const body = new ReplayableBody(source, 1024);
    const first = body.stream();
    source.write('one,');
    source.write('two,');
    assert.equal(await take(first, 8), 'one,two,');
    first.destroy(); // the attempt failed
    const second = body.stream();
    source.write('three');
    source.end();
    assert.equal(await all(second), 'one,two,three');
    assert.ok(body.replayable);
  });

  it('stops an older attempt from reading once a newer one started', async () => {
    const source = new PassThrough();
    const body = new ReplayableBody(source, 1024);
    const first = body.stream();
    source.write('x');
    await take(first, 1);
    const second = body.stream();
    source.end('y');
    assert.equal(await all(second), 'xy');
    assert.equal(await all(first), '', 'the given-up attempt got nothing more');
  });

  it('drops its copy past the limit and refuses to replay, while the current attempt goes on', async () => {
    const source = new PassThrough();
    const body = new ReplayableBody(source, 4);
    const first = body.stream();
    source.write('abc');
    await take(first, 1);
    assert.ok(body.replayable);
    source.write('defgh');
    source.end('ij');
    assert.equal(await all(first), 'defghij');
    assert.equal(body.replayable, false);
    assert.throws(() => body.stream(), /outgrew its replay copy/);
  });

  it('passes a failure of the caller’s body to the attempt reading it', async () => {
    const source = new PassThrough();
    const body = new ReplayableBody(source, 1024);
    const first = body.stream();
    source.write('a');
    await take(first, 1);
    source.destroy(new Error('caller vanished'));
    await assert.rejects(all(first), /caller vanished/);
  });
});
