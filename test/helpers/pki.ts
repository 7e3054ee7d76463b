/** Certificates for tests, made by meshd's own PKI code into a temp folder. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRootCa, issueLeaf, type IssuedCertificate } from '../../src/tls/pki.ts';

export const DOMAIN = 'test.example';

export async function newCa(domain = DOMAIN): Promise<IssuedCertificate> {
  return createRootCa(domain, 365 * 86_400_000);
}

/** Writes cert.pem, key.pem and ca.pem (the given bundle) for `name` into dir/name. */
export async function writeHost(
  dir: string,
  name: string,
  ca: IssuedCertificate,
  bundle: string,
  opts: { ttlMs?: number; now?: Date; domain?: string } = {},
): Promise<{ dir: string; identity: string }> {
  const identity = `spiffe://${opts.domain ?? DOMAIN}/host/${name}`;
  const leaf = await issueLeaf(ca, identity, opts.ttlMs ?? 3_600_000, opts.now);
  const { mkdirSync } = await import('node:fs');
  const hostDir = join(dir, name);
  mkdirSync(hostDir, { recursive: true });
  writeFileSync(join(hostDir, 'key.pem'), leaf.keyPem);
  writeFileSync(join(hostDir, 'ca.pem'), bundle);
  writeFileSync(join(hostDir, 'cert.pem'), leaf.certPem);
  return { dir: hostDir, identity };
}

export function tlsBlock(hostDir: string): string {
  return `tls: { cert: ${join(hostDir, 'cert.pem')}, key: ${join(hostDir, 'key.pem')}, ca: ${join(hostDir, 'ca.pem')} }`;
}
