import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { createRootCa, inspectCertificate, issueLeaf, parseSpiffeId } from '../../../src/tls/pki.ts';

describe('PKI', () => {
  it('issues a leaf with the identity as URI SAN, signed by the CA, for client and server auth', async () => {
    const ca = await createRootCa('prod.example', 365 * 86_400_000);
    const leaf = await issueLeaf(ca, 'spiffe://prod.example/host/web-1', 3_600_000);
    const caCert = new X509Certificate(ca.certPem);
    const cert = new X509Certificate(leaf.certPem);
    assert.ok(cert.verify(caCert.publicKey), 'signed by the CA');
    assert.ok(cert.checkIssued(caCert));
    assert.equal(cert.subjectAltName, 'URI:spiffe://prod.example/host/web-1');
    assert.equal(caCert.ca, true);
    assert.equal(cert.ca, false);
    assert.deepEqual(cert.keyUsage.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    const info = inspectCertificate(leaf.certPem);
    assert.deepEqual(info.identities, ['spiffe://prod.example/host/web-1']);
    assert.ok(info.notAfter.getTime() - info.notBefore.getTime() <= 3_600_000 + 60_000);
    assert.equal(info.fingerprintSha256, cert.fingerprint256);
  });

  it('refuses identities that are not SPIFFE IDs', async () => {
    assert.equal(typeof parseSpiffeId('spiffe://prod.example/host/a'), 'object');
    for (const bad of ['http://x/y', 'spiffe://Prod/x', 'spiffe://prod.example', 'spiffe://prod.example/'])
      assert.equal(typeof parseSpiffeId(bad), 'string', bad);
    const ca = await createRootCa('prod.example', 86_400_000);
    await assert.rejects(issueLeaf(ca, 'not-an-id', 1000));
  });
});
