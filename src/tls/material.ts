/**
 * This host's TLS material: certificate (with its intermediates), key and
 * trust bundle, loaded from files and checked before use (readable, PEM, key
 * matches certificate, certificate chains to a root of the bundle, has exactly
 * one SPIFFE identity, and on rotation: valid now). A bad or mismatched set is
 * rejected with the reason; callers keep the old one.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { TlsPaths } from '../config/types.ts';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { identityOf } from '../identity/spiffe.ts';

export type { TlsPaths } from '../config/types.ts';

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
  /** When the material was refused only for not being valid yet: the moment it becomes valid (epoch ms). */
  readonly validFrom: number | undefined;
  constructor(message: string, validFrom?: number) {
    super(message);
    this.validFrom = validFrom;
  }
}

export interface CheckOptions {
  /**
   * Refuse a leaf or intermediate outside its validity period at `now` (epoch ms). Rotation does:
   * switching to an expired certificate would only make every peer refuse this host. At start an
   * expired certificate is loaded, reported, and keeps /readyz failing until a valid one arrives.
   */
  readonly validAt?: number;
}

export async function loadTlsMaterial(paths: TlsPaths, options: CheckOptions = {}): Promise<TlsMaterial> {
  const read = async (what: string, path: string): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      throw new TlsMaterialError(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const [certPem, keyPem, caPem] = await Promise.all([read('certificate', paths.cert), read('key', paths.key), read('trust bundle', paths.ca)]);
  return checkTlsMaterial(certPem, keyPem, caPem, paths.cert, options);
}

/** The longest chain accepted: leaf, intermediates, root. */
const MAX_CHAIN = 8;

/**
 * Checks a certificate file (the leaf, then any intermediates, as cert-manager and most PKIs write
 * it), its key and the trust bundle: the key is the leaf's, and the leaf chains through CA
 * certificates of the file or the bundle to a self-signed root of the bundle.
 */
export function checkTlsMaterial(certPem: string, keyPem: string, caPem: string, source = 'certificate', options: CheckOptions = {}): TlsMaterial {
  const chain = parseAll(certPem, (err) => `${source} is not a PEM certificate (${err})`);
  const cert = chain[0];
  if (cert === undefined) throw new TlsMaterialError(`${source} is not a PEM certificate (no certificate in it)`);
  try {
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) throw new TlsMaterialError(`the key does not belong to ${source}`);
  } catch (err) {
    if (err instanceof TlsMaterialError) throw err;
    throw new TlsMaterialError(`the key is not a PEM private key (${(err as Error).message})`);
  }
  const bundle = parseAll(caPem, (err) => `the trust bundle holds something that is not a certificate (${err})`);
  if (bundle.length === 0) throw new TlsMaterialError('the trust bundle holds no certificate');
  const path = chainToRoot(cert, chain.slice(1), bundle);
  if (path === undefined) {
    throw new TlsMaterialError(
      `${source} is not signed by any certificate in the trust bundle${chain.length > 1 ? ', directly or through the intermediates in the file' : ' (an intermediate CA belongs in the certificate file, after the leaf)'}`,
    );
  }
  if (options.validAt !== undefined) checkValidity([cert, ...path], options.validAt, source);
  const identity = identityOf(cert.subjectAltName);
  if (identity === undefined) throw new TlsMaterialError(`${source} has no single SPIFFE identity in its URI SAN`);
  try {
    createSecureContext({ cert: certPem, key: keyPem, ca: caPem });
  } catch (err) {
    throw new TlsMaterialError(`TLS rejects the material: ${(err as Error).message}`);
  }
  return { certPem, keyPem, caPem, identity, notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo), fingerprint: cert.fingerprint256 };
}

function parseAll(pem: string, problem: (err: string) => string): X509Certificate[] {
  return splitPem(pem).map((block) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new TlsMaterialError(problem((err as Error).message));
    }
  });
}

function issued(child: X509Certificate, parent: X509Certificate): boolean {
  return child.checkIssued(parent) && child.verify(parent.publicKey);
}

/** The CA certificates from `leaf` up to a self-signed root of the bundle (root included), or undefined. */
function chainToRoot(leaf: X509Certificate, intermediates: readonly X509Certificate[], bundle: readonly X509Certificate[]): X509Certificate[] | undefined {
  const path: X509Certificate[] = [];
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    const root = bundle.find((c) => c.ca && issued(current, c) && issued(c, c));
    if (root !== undefined) return [...path, root];
    // An intermediate from the file, or one the bundle carries beside its roots.
    const next = [...intermediates, ...bundle].find((c) => c.ca && !path.includes(c) && c !== current && issued(current, c));
    if (next === undefined) return undefined;
    path.push(next);
    current = next;
  }
  return undefined;
}

function checkValidity(chain: readonly X509Certificate[], now: number, source: string): void {
  chain.forEach((c, i) => {
    const what = i === 0 ? source : `the CA certificate "${c.subject.replace(/\n/g, ', ')}" in its chain`;
    const from = new Date(c.validFrom).getTime();
    const to = new Date(c.validTo).getTime();
    if (now >= to) throw new TlsMaterialError(`${what} expired at ${new Date(to).toISOString()}`);
    if (now < from) throw new TlsMaterialError(`${what} is not valid before ${new Date(from).toISOString()}`, from);
  });
}

function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Options for a TLS server or client on this material. */
export function secureOptions(m: TlsMaterial, minVersion: 'TLSv1.2' | 'TLSv1.3'): SecureContextOptions {
  return { cert: m.certPem, key: m.keyPem, ca: m.caPem, minVersion };
}
