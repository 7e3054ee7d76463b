/**
 * Peer identities: read from a certificate's URI SAN, and matched against
 * the allow/deny patterns of a local service's policy. A pattern is compared
 * segment by segment ("/" separates segments): "*" matches any run of
 * characters within one segment, and a last segment of exactly "**" matches
 * any number of further segments, none included ("…/team/**" matches
 * "…/team", "…/team/x" and "…/team/x/y").
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

const REGEX_SPECIALS = /[.*+?^${}()|[\]\\]/g;

/** Why `pattern` is not a valid identity pattern, or undefined when it is. */
export function identityPatternProblem(pattern: string): string | undefined {
  const segments = pattern.split('/');
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (!segment.includes('**')) continue;
    if (segment !== '**' || i !== segments.length - 1) return `"**" may only stand alone as the last segment ("…/team/**"), got ${JSON.stringify(pattern)}`;
  }
  return undefined;
}

/** Compiles "spiffe://prod.example/host/*" into a matcher (see the header for the syntax). */
export function identityPattern(pattern: string): (identity: string) => boolean {
  const segments = pattern.split('/');
  const anyRest = segments.length > 1 && segments[segments.length - 1] === '**';
  if (anyRest) segments.pop();
  // Each segment: its literal parts escaped, its "*" runs matching within the segment only.
  const body = segments
    .map((s) =>
      s
        .split('*')
        .map((part) => part.replace(REGEX_SPECIALS, '\\$&'))
        .join('[^/]*'),
    )
    .join('/');
  const regex = new RegExp(`^${body}${anyRest ? '(?:/.*)?' : ''}$`, 's');
  return (identity) => regex.test(identity);
}

export interface Policy {
  allow: readonly string[];
  deny: readonly string[];
}

export interface Verdict {
  allowed: boolean;
  rule: string;
}

/** A policy compiled once: deny wins; with an allow list, only what it names gets in; with neither, any verified peer does. */
export function compilePolicy(policy: Policy): (identity: string) => Verdict {
  const deny = policy.deny.map((p) => [p, identityPattern(p)] as const);
  const allow = policy.allow.map((p) => [p, identityPattern(p)] as const);
  return (identity) => {
    for (const [p, matches] of deny) if (matches(identity)) return { allowed: false, rule: `deny ${p}` };
    if (allow.length === 0) return { allowed: true, rule: 'no allow list' };
    for (const [p, matches] of allow) if (matches(identity)) return { allowed: true, rule: `allow ${p}` };
    return { allowed: false, rule: 'not in the allow list' };
  };
}

/** One-off form of compilePolicy. */
export function authorize(policy: Policy, identity: string): Verdict {
  return compilePolicy(policy)(identity);
}

const SPIFFE = /^spiffe:\/\/([a-z0-9.-]+)(\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]+)$/;

/** Checks a SPIFFE ID (spiffe://trust-domain/path); returns its trust domain or a reason. */
export function parseSpiffeId(id: string): { trustDomain: string } | string {
  const match = SPIFFE.exec(id);
  if (match === null) return `"${id}" is not a SPIFFE ID like spiffe://prod.example/host/web-1`;
  return { trustDomain: match[1] as string };
}
