/**
 * Identity patterns and the allow/deny policy: a table of the cases that
 * matter, and a seeded property test against an independent reference
 * matcher (segment-wise recursion with a character-level glob).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seededRandom, type Random } from '../../../src/clock.ts';
import { authorize, identityOf, identityPattern, identityPatternProblem } from '../../../src/identity/spiffe.ts';

/** "*" within one segment, by recursion on characters. */
function globSegment(pattern: string, text: string): boolean {
  if (pattern === '') return text === '';
  if (pattern[0] === '*') return globSegment(pattern.slice(1), text) || (text !== '' && globSegment(pattern, text.slice(1)));
  return text !== '' && pattern[0] === text[0] && globSegment(pattern.slice(1), text.slice(1));
}

function reference(pattern: string, identity: string): boolean {
  const ps = pattern.split('/');
  const is = identity.split('/');
  const anyRest = ps.length > 1 && ps[ps.length - 1] === '**';
  const fixed = anyRest ? ps.slice(0, -1) : ps;
  if (anyRest ? is.length < fixed.length : is.length !== fixed.length) return false;
  return fixed.every((p, i) => globSegment(p, is[i]!));
}

const TABLE: [pattern: string, identity: string, matches: boolean][] = [
  ['spiffe://prod.example/host/*', 'spiffe://prod.example/host/web-1', true],
  ['spiffe://prod.example/host/*', 'spiffe://prod.example/host/web/1', false],
  ['spiffe://prod.example/host/*', 'spiffe://prod.example/host', false],
  ['spiffe://prod.example/untrusted/**', 'spiffe://prod.example/untrusted/team/x', true],
  ['spiffe://prod.example/untrusted/**', 'spiffe://prod.example/untrusted/team/x/y/z', true],
  ['spiffe://prod.example/untrusted/**', 'spiffe://prod.example/untrusted/x', true],
  ['spiffe://prod.example/untrusted/**', 'spiffe://prod.example/untrusted', true],
  ['spiffe://prod.example/untrusted/**', 'spiffe://prod.example/untrustedx/y', false],
  ['spiffe://prod.example/untrusted/**', 'spiffe://prod.example/trusted/untrusted/x', false],
  ['spiffe://prod.example/ns/*/sa/web', 'spiffe://prod.example/ns/shop/sa/web', true],
  ['spiffe://prod.example/ns/*/sa/web', 'spiffe://prod.example/ns/shop/extra/sa/web', false],
  ['spiffe://prod.example/host/web-*', 'spiffe://prod.example/host/web-12', true],
  ['spiffe://prod.example/host/web-*', 'spiffe://prod.example/host/db-1', false],
  // "." and other regex characters are literal.
  ['spiffe://prod.example/host/a', 'spiffe://prodXexample/host/a', false],
  ['spiffe://prod.example/host/a+b', 'spiffe://prod.example/host/a+b', true],
  ['spiffe://prod.example/host/a+b', 'spiffe://prod.example/host/aab', false],
  ['spiffe://*/host/a', 'spiffe://any.example/host/a', true],
  ['spiffe://**', 'spiffe://any.example/host/a/b', true],
  ['spiffe://prod.example/host/a', 'spiffe://prod.example/host/a\n', false],
];

describe('identity patterns', () => {
  it('match the table of cases, the trailing "/**" at any depth included', () => {
    for (const [pattern, identity, matches] of TABLE) {
      assert.equal(identityPattern(pattern)(identity), matches, `${pattern} vs ${identity}`);
      assert.equal(reference(pattern, identity), matches, `reference: ${pattern} vs ${identity}`);
    }
  });

  it('agree with the reference matcher on 20,000 seeded random patterns and identities', () => {
    const random = seededRandom(11);
    const pick = <T>(r: Random, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const segment = (r: Random, alphabet: string): string => Array.from({ length: Math.floor(r() * 4) }, () => pick(r, alphabet.split(''))).join('');
    let matched = 0;
    for (let i = 0; i < 20_000; i++) {
      const depth = 1 + Math.floor(random() * 4);
      const segments = Array.from({ length: depth }, () => segment(random, 'ab.*+'));
      if (random() < 0.3) segments.push('**');
      const pattern = `spiffe://t/${segments.join('/')}`;
      // Half the identities are instances of the pattern (mutated now and then), half are random.
      const instance = segments.flatMap((s) =>
        s === '**' ? Array.from({ length: Math.floor(random() * 3) }, () => segment(random, 'ab')) : [s.replace(/\*/g, () => segment(random, 'ab.'))],
      );
      if (random() < 0.2 && instance.length > 0) {
        const i = Math.floor(random() * instance.length);
        instance[i] = instance[i]! + pick(random, ['a', '/b', '+']);
      }
      const identity =
        random() < 0.5
          ? `spiffe://t/${instance.join('/')}`
          : `spiffe://t/${Array.from({ length: 1 + Math.floor(random() * 5) }, () => segment(random, 'ab.+')).join('/')}`;
      const expected = reference(pattern, identity);
      if (expected) matched++;
      assert.equal(identityPattern(pattern)(identity), expected, `${pattern} vs ${identity}`);
    }
    assert.ok(matched > 5_000, `the generator exercises matches too (${matched})`);
  });

  it('accept "**" only as the whole last segment', () => {
    assert.equal(identityPatternProblem('spiffe://prod.example/team/**'), undefined);
    assert.equal(identityPatternProblem('spiffe://prod.example/host/*'), undefined);
    for (const bad of ['spiffe://prod.example/**/x', 'spiffe://prod.example/team**', 'spiffe://prod.example/a/b**c'])
      assert.equal(typeof identityPatternProblem(bad), 'string', bad);
  });
});

describe('authorize', () => {
  const ID = 'spiffe://prod.example/untrusted/team/x';
  it('lets deny win over allow, at any depth', () => {
    const verdict = authorize({ allow: ['spiffe://prod.example/**'], deny: ['spiffe://prod.example/untrusted/**'] }, ID);
    assert.deepEqual(verdict, { allowed: false, rule: 'deny spiffe://prod.example/untrusted/**' });
    assert.equal(
      authorize({ allow: ['spiffe://prod.example/**'], deny: ['spiffe://prod.example/untrusted/**'] }, 'spiffe://prod.example/host/a').allowed,
      true,
    );
  });

  it('admits only what the allow list names, and any verified peer without lists', () => {
    assert.deepEqual(authorize({ allow: ['spiffe://prod.example/host/*'], deny: [] }, ID), { allowed: false, rule: 'not in the allow list' });
    assert.deepEqual(authorize({ allow: [], deny: [] }, ID), { allowed: true, rule: 'no allow list' });
  });

  it('agrees with the reference for every combination of a small pattern set', () => {
    const patterns = ['spiffe://p/a/*', 'spiffe://p/a/**', 'spiffe://p/*/b', 'spiffe://p/**', 'spiffe://p/a/b'];
    const identities = ['spiffe://p/a', 'spiffe://p/a/b', 'spiffe://p/a/b/c', 'spiffe://p/x/b', 'spiffe://q/a/b'];
    for (let mask = 0; mask < 1 << (patterns.length * 2); mask++) {
      const allow = patterns.filter((_, i) => (mask >> i) & 1);
      const deny = patterns.filter((_, i) => (mask >> (i + patterns.length)) & 1);
      for (const id of identities) {
        const denied = deny.some((p) => reference(p, id));
        const expected = !denied && (allow.length === 0 || allow.some((p) => reference(p, id)));
        assert.equal(authorize({ allow, deny }, id).allowed, expected, `allow ${allow.join(',')} deny ${deny.join(',')} id ${id}`);
      }
    }
  });
});

describe('identityOf', () => {
  it('takes exactly one SPIFFE URI SAN', () => {
    assert.equal(identityOf('URI:spiffe://p/a'), 'spiffe://p/a');
    assert.equal(identityOf('DNS:x, URI:spiffe://p/a'), 'spiffe://p/a');
    assert.equal(identityOf('URI:spiffe://p/a, URI:spiffe://p/b'), undefined);
    assert.equal(identityOf(undefined), undefined);
  });
});
