import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compose, type Handler, type Layer } from '../../../src/stack/layer.ts';
import { fakeExchange } from '../../helpers/fake-exchange.ts';

describe('compose', () => {
  it('runs layers outermost first and unwinds in reverse', async () => {
    const trace: string[] = [];
    const layer =
      (name: string): Layer =>
      (next) =>
      async (ex) => {
        trace.push(`${name}>`);
        await next(ex);
        trace.push(`<${name}`);
      };
    const terminal: Handler = () => {
      trace.push('terminal');
      return Promise.resolve();
    };
    await compose([layer('a'), layer('b')], terminal)(fakeExchange().ex);
    assert.deepEqual(trace, ['a>', 'b>', 'terminal', '<b', '<a']);
  });

  it('checks that every layer is a layer', () => {
    const notALayer = 42 as unknown as Layer;
    assert.throws(() => compose([notALayer], async () => {}), /layer 0 is not a function/);
    const badLayer = (() => 'nope') as unknown as Layer;
    assert.throws(() => compose([badLayer], async () => {}), /layer 0 did not return a handler/);
  });
});
