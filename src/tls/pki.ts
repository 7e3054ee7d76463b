/**
 * meshd's PKI, on node-forge: a root CA per trust domain, and short-lived
 * leaf certificates whose identity is a SPIFFE ID in a URI SAN, valid for
 * both server and client authentication. Key pairs come from Node's native
 * crypto (`generateKeyPair`, asynchronous, off the event loop): node-forge's
 * pure-JS RSA key generation takes seconds of blocking CPU, its signing does
 * not. Signatures are RSA-SHA256.
 */
import { generateKeyPair, createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { parseSpiffeId } from '../identity/spiffe.ts';

const generateRsa = promisify(generateKeyPair);

export interface KeyPairPem {
  privateKeyPem: string;
  publicKeyPem: string;
}

/** An RSA key pair generated without blocking the event loop. */
export async function newKeyPair(bits = 2048): Promise<KeyPairPem> {
  const { privateKey, publicKey } = await generateRsa('rsa', {
    modulusLength: bits,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

export interface IssuedCertificate {
  certPem: string;
  keyPem: string;
}

export { parseSpiffeId } from '../identity/spiffe.ts';

function serialNumber(): string {
  // Positive, 16 random bytes: unique without a counter file.
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

function window(notBefore: Date, ttlMs: number): { notBefore: Date; notAfter: Date } {
  return { notBefore, notAfter: new Date(notBefore.getTime() + ttlMs) };
}

/**
 * A new certificate for `keys`, valid for `ttlMs` from a minute before `now` (hosts whose clocks
 * lag slightly still accept it); the caller sets names and extensions, then signs.
 */
function newCertificate(keys: KeyPairPem, ttlMs: number, now: Date): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = serialNumber();
  const validity = window(new Date(now.getTime() - 60_000), ttlMs);
  cert.validity.notBefore = validity.notBefore;
  cert.validity.notAfter = validity.notAfter;
  return cert;
}

/** A self-signed root CA for `trustDomain`. */
export async function createRootCa(trustDomain: string, ttlMs: number, now = new Date()): Promise<IssuedCertificate> {
  const keys = await newKeyPair(3072);
  const cert = newCertificate(keys, ttlMs, now);
  const subject = [
    { name: 'commonName', value: `meshd root CA ${trustDomain}` },
    { name: 'organizationName', value: trustDomain },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'subjectAltName', altNames: [{ type: 6, value: `spiffe://${trustDomain}` }] },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keys.privateKeyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

/**
 * An intermediate CA signed by `parent` (a root or another intermediate), as enterprise PKIs and
 * cert-manager issuers sign leaves: the leaf's file then carries the chain, the bundle the root.
 */
export async function createIntermediateCa(parent: IssuedCertificate, name: string, ttlMs: number, now = new Date()): Promise<IssuedCertificate> {
  const parentCert = forge.pki.certificateFromPem(parent.certPem);
  const keys = await newKeyPair(2048);
  const cert = newCertificate(keys, ttlMs, now);
  cert.setSubject([{ name: 'commonName', value: name.slice(0, 64) }]);
  cert.setIssuer(parentCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: parentCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(parent.keyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

/** A leaf certificate for `identity`, signed by the CA, for client and server auth. */
export async function issueLeaf(ca: IssuedCertificate, identity: string, ttlMs: number, now = new Date()): Promise<IssuedCertificate> {
  const parsed = parseSpiffeId(identity);
  if (typeof parsed === 'string') throw new Error(parsed);
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const keys = await newKeyPair(2048);
  const cert = newCertificate(keys, ttlMs, now);
  cert.setSubject([{ name: 'commonName', value: identity.slice(identity.lastIndexOf('/') + 1).slice(0, 64) || parsed.trustDomain }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    // The identity is the URI SAN, as SPIFFE X.509-SVIDs carry it.
    { name: 'subjectAltName', altNames: [{ type: 6, value: identity }], critical: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(ca.keyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

export interface CertificateInfo {
  subject: string;
  issuer: string;
  identities: string[];
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  serial: string;
  fingerprintSha256: string;
}

/** What `meshd cert inspect` shows: identity, issuer, validity, fingerprint. */
export function inspectCertificate(pem: string): CertificateInfo {
  const cert = forge.pki.certificateFromPem(pem);
  const san = cert.getExtension('subjectAltName') as { altNames?: { type: number; value: string }[] } | null;
  const basic = cert.getExtension('basicConstraints') as { cA?: boolean } | null;
  const der = forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes();
  const fingerprint = createHash('sha256').update(Buffer.from(der, 'binary')).digest('hex');
  const name = (attrs: forge.pki.CertificateField[]): string => attrs.map((a) => `${a.shortName ?? a.name}=${String(a.value)}`).join(', ');
  return {
    subject: name(cert.subject.attributes),
    issuer: name(cert.issuer.attributes),
    identities: (san?.altNames ?? []).filter((n) => n.type === 6).map((n) => n.value),
    notBefore: cert.validity.notBefore,
    notAfter: cert.validity.notAfter,
    isCa: basic?.cA === true,
    serial: cert.serialNumber,
    fingerprintSha256: fingerprint.match(/../g)!.join(':').toUpperCase(),
  };
}
