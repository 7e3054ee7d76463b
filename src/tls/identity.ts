/**
 * Peer identities: read from a certificate's URI SAN, and matched against
 * the allow/deny patterns of a local service's policy ("*" matches any run
 * of characters within one path segment, a trailing "/**" any rest).
 */
import type { PeerCertificate } from 'node:tls';

/** The SPIFFE ID in a certificate's subjectAltName ("URI:spiffe://…"), if exactly one is there. */
export function identityOf(subjectAltName: string | undefined): string | undefined {
  if (subjectAltName === undefined) return undefined;
  const uris = subjectAltName
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('URI:spiffe://'))
    .map((s) => s.slice(4));
  return uris.length === 1 ? uris[0] : undefined;
}

export function peerIdentity(cert: PeerCertificate | undefined | null): string | undefined {
  if (cert === undefined || cert === null || Object.keys(cert).length === 0) return undefined;
  return identityOf(cert.subjectaltname);
}

/** Compiles "spiffe://prod.example/host/*" into a matcher. */
export function identityPattern(pattern: string): (identity: string) => boolean {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  const regex = new RegExp(`^${escaped.replace(/\/\\\*\\\*$|\/\*\*$/, '(/.*)?').replace(/\*/g, '[^/]*')}$`);
  return (identity) => regex.test(identity);
}

export interface Policy {
  allow: readonly string[];
  deny: readonly string[];
}

/** Deny wins; with an allow list, only what it names gets in; with neither, any verified peer does. */
export function authorize(policy: Policy, identity: string): { allowed: boolean; rule: string } {
  for (const p of policy.deny) if (identityPattern(p)(identity)) return { allowed: false, rule: `deny ${p}` };
  if (policy.allow.length === 0) return { allowed: true, rule: 'no allow list' };
  for (const p of policy.allow) if (identityPattern(p)(identity)) return { allowed: true, rule: `allow ${p}` };
  return { allowed: false, rule: 'not in the allow list' };
}
