/**
 * This host's TLS material: certificate, key and trust bundle, loaded from
 * files and checked before use (readable, PEM, key matches certificate,
 * certificate chains to the bundle, has exactly one SPIFFE identity). A bad
 * or mismatched set is rejected with the reason; callers keep the old one.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { identityOf } from './identity.ts';

export interface TlsPaths {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

export interface TlsMaterial {
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
  readonly identity: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly fingerprint: string;
}

export class TlsMaterialError extends Error {
  readonly code = 'invalid_tls_material';
}

export async function loadTlsMaterial(paths: TlsPaths): Promise<TlsMaterial> {
  const read = async (what: string, path: string): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      throw new TlsMaterialError(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const [certPem, keyPem, caPem] = await Promise.all([read('certificate', paths.cert), read('key', paths.key), read('trust bundle', paths.ca)]);
  return checkTlsMaterial(certPem, keyPem, caPem, paths.cert);
}

export function checkTlsMaterial(certPem: string, keyPem: string, caPem: string, source = 'certificate'): TlsMaterial {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new TlsMaterialError(`${source} is not a PEM certificate (${(err as Error).message})`);
  }
  try {
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) throw new TlsMaterialError(`the key does not belong to ${source}`);
  } catch (err) {
    if (err instanceof TlsMaterialError) throw err;
    throw new TlsMaterialError(`the key is not a PEM private key (${(err as Error).message})`);
  }
  const roots = splitPem(caPem).map((pem) => {
    try {
      return new X509Certificate(pem);
    } catch (err) {
      throw new TlsMaterialError(`the trust bundle holds something that is not a certificate (${(err as Error).message})`);
    }
  });
  if (roots.length === 0) throw new TlsMaterialError('the trust bundle holds no certificate');
  if (!roots.some((root) => cert.checkIssued(root) && cert.verify(root.publicKey))) {
    throw new TlsMaterialError(`${source} is not signed by any certificate in the trust bundle`);
  }
  const identity = identityOf(cert.subjectAltName);
  if (identity === undefined) throw new TlsMaterialError(`${source} has no single SPIFFE identity in its URI SAN`);
  try {
    createSecureContext({ cert: certPem, key: keyPem, ca: caPem });
  } catch (err) {
    throw new TlsMaterialError(`TLS rejects the material: ${(err as Error).message}`);
  }
  return { certPem, keyPem, caPem, identity, notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo), fingerprint: cert.fingerprint256 };
}

function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Options for a TLS server or client on this material. */
export function secureOptions(m: TlsMaterial, minVersion: 'TLSv1.2' | 'TLSv1.3'): SecureContextOptions {
  return { cert: m.certPem, key: m.keyPem, ca: m.caPem, minVersion };
}
