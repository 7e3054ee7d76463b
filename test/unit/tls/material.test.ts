/**
 * The checks a set of TLS material passes before meshd uses it: key and
 * certificate belong together, the certificate chains to a root of the bundle
 * (directly or through intermediates in its file, as cert-manager writes
 * them), and on rotation the chain is valid now.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { checkTlsMaterial, TlsMaterialError } from '../../../src/tls/material.ts';
import { createIntermediateCa, createRootCa, issueLeaf, type IssuedCertificate } from '../../../src/tls/pki.ts';

const ID = 'spiffe://prod.example/host/web-1';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function refused(fn: () => unknown, pattern: RegExp): TlsMaterialError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof TlsMaterialError, String(err));
    assert.equal(err.code, 'invalid_tls_material');
    assert.match(err.message, pattern);
    return err;
  }
  assert.fail(`accepted; expected a refusal matching ${pattern}`);
}

describe('TLS material checks', () => {
  let root: IssuedCertificate;
  let otherRoot: IssuedCertificate;
  let intermediate: IssuedCertificate;
  let issuing: IssuedCertificate;

  before(async () => {
    root = await createRootCa('prod.example', 365 * DAY);
    otherRoot = await createRootCa('prod.example', 365 * DAY);
    intermediate = await createIntermediateCa(root, 'prod.example intermediate', 30 * DAY);
    issuing = await createIntermediateCa(intermediate, 'prod.example issuing', 30 * DAY);
  });

  it('accepts a leaf signed by a root of the bundle, and reads its identity and validity', async () => {
    const leaf = await issueLeaf(root, ID, HOUR);
    const m = checkTlsMaterial(leaf.certPem, leaf.keyPem, `${otherRoot.certPem}${root.certPem}`, 'cert.pem', { validAt: Date.now() });
    assert.equal(m.identity, ID);
    assert.ok(m.notAfter.getTime() > Date.now());
  });

  it('accepts chains through one and two intermediates carried in the certificate file', async () => {
    const one = await issueLeaf(intermediate, ID, HOUR);
    checkTlsMaterial(`${one.certPem}${intermediate.certPem}`, one.keyPem, root.certPem, 'cert.pem', { validAt: Date.now() });
    const two = await issueLeaf(issuing, ID, HOUR);
    const m = checkTlsMaterial(`${two.certPem}${issuing.certPem}${intermediate.certPem}`, two.keyPem, root.certPem, 'cert.pem', { validAt: Date.now() });
    assert.equal(m.identity, ID);
    // Intermediates in the bundle beside the root serve as well.
    checkTlsMaterial(two.certPem, two.keyPem, `${root.certPem}${intermediate.certPem}${issuing.certPem}`);
  });

  it('refuses a chain that stops short of the bundle, or reaches another root', async () => {
    const leaf = await issueLeaf(issuing, ID, HOUR);
    refused(
      () => checkTlsMaterial(`${leaf.certPem}${issuing.certPem}`, leaf.keyPem, root.certPem),
      /not signed by any certificate in the trust bundle, directly or through the intermediates/,
    );
    refused(() => checkTlsMaterial(leaf.certPem, leaf.keyPem, root.certPem), /an intermediate CA belongs in the certificate file/);
    refused(
      () => checkTlsMaterial(`${leaf.certPem}${issuing.certPem}${intermediate.certPem}`, leaf.keyPem, otherRoot.certPem),
      /not signed by any certificate in the trust bundle/,
    );
    // A bundle holding only the intermediate: a root must anchor the chain.
    refused(
      () => checkTlsMaterial(`${leaf.certPem}${issuing.certPem}`, leaf.keyPem, intermediate.certPem),
      /not signed by any certificate in the trust bundle/,
    );
  });

  it('refuses on rotation a leaf that expired or is not valid yet, saying when it becomes valid', async () => {
    const expired = await issueLeaf(root, ID, HOUR, new Date(Date.now() - 2 * DAY));
    refused(() => checkTlsMaterial(expired.certPem, expired.keyPem, root.certPem, 'cert.pem', { validAt: Date.now() }), /cert\.pem expired at/);
    const future = await issueLeaf(root, ID, HOUR, new Date(Date.now() + DAY));
    const err = refused(
      () => checkTlsMaterial(future.certPem, future.keyPem, root.certPem, 'cert.pem', { validAt: Date.now() }),
      /cert\.pem is not valid before/,
    );
    assert.ok(err.validFrom !== undefined && err.validFrom > Date.now() + DAY - 2 * 60_000);
    // At start, without a time to check against, it loads (and /readyz reports it not ready).
    assert.equal(checkTlsMaterial(expired.certPem, expired.keyPem, root.certPem).identity, ID);
  });

  it('refuses on rotation a chain whose intermediate expired', async () => {
    const old = await createIntermediateCa(root, 'old intermediate', DAY, new Date(Date.now() - 3 * DAY));
    const leaf = await issueLeaf(old, ID, 10 * DAY, new Date(Date.now() - 3 * DAY));
    refused(
      () => checkTlsMaterial(`${leaf.certPem}${old.certPem}`, leaf.keyPem, root.certPem, 'cert.pem', { validAt: Date.now() }),
      /the CA certificate .* in its chain expired at/,
    );
  });

  it('refuses a key that is not the leaf’s, and files that are not PEM', async () => {
    const leaf = await issueLeaf(root, ID, HOUR);
    const other = await issueLeaf(root, ID, HOUR);
    refused(() => checkTlsMaterial(leaf.certPem, other.keyPem, root.certPem, 'cert.pem'), /the key does not belong to cert\.pem/);
    refused(() => checkTlsMaterial('garbage', leaf.keyPem, root.certPem, 'cert.pem'), /cert\.pem is not a PEM certificate/);
    refused(() => checkTlsMaterial(leaf.certPem, 'garbage', root.certPem, 'cert.pem'), /the key is not a PEM private key/);
    refused(() => checkTlsMaterial(leaf.certPem, leaf.keyPem, 'garbage'), /the trust bundle holds no certificate/);
  });
});
