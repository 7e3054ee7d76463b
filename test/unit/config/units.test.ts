import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDuration, parseDuration, parseSize } from '../../../src/config/units.ts';

describe('durations', () => {
  const cases: [string, number | undefined][] = [
    ['250ms', 250],
    ['10s', 10_000],
    ['1.5s', 1_500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['0s', 0],
    ['fast', undefined],
    ['10', undefined],
    ['', undefined],
    ['5 s', undefined],
    ['-1s', undefined],
    ['1s fast', undefined],
  ];
  for (const [text, expected] of cases) {
    it(`parses ${JSON.stringify(text)} as ${String(expected)}`, () => assert.equal(parseDuration(text), expected));
  }
  it('formats milliseconds back in the largest whole unit', () => {
    assert.equal(formatDuration(250), '250ms');
    assert.equal(formatDuration(10_000), '10s');
    assert.equal(formatDuration(120_000), '2m');
    assert.equal(formatDuration(7_200_000), '2h');
  });
});

describe('sizes', () => {
  const cases: [string, number | undefined][] = [
    ['512B', 512],
    ['16KiB', 16_384],
    ['1MiB', 1_048_576],
    ['1GiB', 1_073_741_824],
    ['2KB', 2_000],
    ['1.5MB', 1_500_000],
    ['16kb', undefined],
    ['16', undefined],
    ['lots', undefined],
  ];
  for (const [text, expected] of cases) {
    it(`parses ${JSON.stringify(text)} as ${String(expected)}`, () => assert.equal(parseSize(text), expected));
  }
});
