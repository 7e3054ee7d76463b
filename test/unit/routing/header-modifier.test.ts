/**
 * Gateway API header modifiers on a fake exchange: the field list the
 * forwarder sends and every field read by later layers agree, for names
 * the modifier sets, adds, removes and leaves alone; the response side
 * edits meshd's own fields too.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HeaderModifier } from '../../../src/config/types.ts';
import { headerModifierLayer } from '../../../src/routing/header-modifier.ts';
import type { RequestHead } from '../../../src/stack/exchange.ts';
import { compose } from '../../../src/stack/layer.ts';
import { fakeExchange } from '../../helpers/fake-exchange.ts';

const modifier: HeaderModifier = {
  set: [{ name: 'x-env', value: 'prod' }],
  add: [
    { name: 'x-tag', value: 'meshd' },
    { name: 'x-new', value: '1' },
  ],
  remove: ['authorization'],
};

/** The head the next layer sees after the request modifier. */
async function modified(fields: Record<string, string>): Promise<RequestHead> {
  const { ex } = fakeExchange({ fields });
  let seen: RequestHead | undefined;
  await compose([headerModifierLayer(modifier, undefined)], (e) => {
    seen = e.head;
    return Promise.resolve();
  })(ex);
  assert.ok(seen !== undefined);
  return seen;
}

/** Every value of `name` in a field list, as one reader would join them. */
function listed(head: RequestHead, name: string): string | undefined {
  const values: string[] = [];
  for (let i = 0; i + 1 < head.fields.length; i += 2) if (head.fields[i]?.toLowerCase() === name) values.push(head.fields[i + 1] as string);
  return values.length === 0 ? undefined : values.join(', ');
}

describe('header modifiers', () => {
  it('sets, adds and removes request fields; field() reads what the field list sends', async () => {
    const head = await modified({ 'x-env': 'dev', 'x-tag': 'app', authorization: 'Bearer t', accept: 'text/plain' });
    const expected: Record<string, string | undefined> = {
      'x-env': 'prod',
      'x-tag': 'app, meshd',
      'x-new': '1',
      authorization: undefined,
      accept: 'text/plain',
      'x-absent': undefined,
    };
    for (const [name, value] of Object.entries(expected)) {
      assert.equal(head.field(name), value, `field(${name})`);
      assert.equal(listed(head, name), value, `field list ${name}`);
    }
  });

  it('sets a field the request did not carry', async () => {
    const head = await modified({});
    assert.equal(head.field('x-env'), 'prod');
    assert.equal(head.field('x-tag'), 'meshd');
    assert.deepEqual(head.fields, ['x-env', 'prod', 'x-tag', 'meshd', 'x-new', '1']);
  });

  it("edits the response at its status line, meshd's early fields included", async () => {
    const { ex, response } = fakeExchange();
    const layer = headerModifierLayer(undefined, {
      set: [{ name: 'x-env', value: 'prod' }],
      add: [{ name: 'vary', value: 'x-env' }],
      remove: ['x-meshd-endpoint'],
    });
    await compose([layer], (e) => {
      e.response.setField('x-meshd-endpoint', '10.0.0.1:80');
      e.response.start(200, { Vary: 'accept', 'X-Env': 'dev', server: 'app' });
      e.response.end();
      return Promise.resolve();
    })(ex);
    assert.deepEqual(response.fields, { vary: ['accept', 'x-env'], 'x-env': 'prod', server: 'app' });
  });
});
