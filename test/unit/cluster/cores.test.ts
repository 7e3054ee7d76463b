import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { autoWorkers, quotaCpus } from '../../../src/cluster/cores.ts';

describe('workers: auto', () => {
  it('reads the cgroup v2 CPU quota', () => {
    assert.equal(quotaCpus('max 100000\n'), undefined);
    assert.equal(quotaCpus('200000 100000\n'), 2);
    assert.equal(quotaCpus('150000 100000'), 1.5);
    assert.equal(quotaCpus('garbage'), undefined);
    assert.equal(quotaCpus('0 100000'), undefined);
  });

  it('is one worker per usable core, capped by the quota rounded up, never 0', () => {
    assert.equal(autoWorkers(64, undefined), 64);
    assert.equal(autoWorkers(64, 2), 2, 'a 2-CPU container on a 64-core node');
    assert.equal(autoWorkers(64, 1.5), 2);
    assert.equal(autoWorkers(4, 16), 4, 'the affinity mask is the other cap');
    assert.equal(autoWorkers(8, 0.25), 1);
  });
});
