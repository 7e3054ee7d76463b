/**
 * `meshd ca init` and `meshd cert issue | inspect`: the PKI commands. Keys are
 * written with mode 0600, certificates 0644; nothing is overwritten silently.
 */
import { mkdir, readFile, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDuration } from '../config/units.ts';
import { createRootCa, inspectCertificate, issueLeaf, parseSpiffeId } from '../tls/pki.ts';

export const CA_HELP = `Usage: meshd ca init --dir DIR --trust-domain DOMAIN [--ttl 87600h] [--force]

Creates a root CA for DOMAIN: DIR/ca.pem (the trust bundle to distribute) and
DIR/ca-key.pem (mode 0600; keep it off the hosts).
`;

export const CERT_HELP = `Usage: meshd cert issue --ca DIR --identity spiffe://DOMAIN/host/NAME [--ttl 24h] --out DIR [--force]
       meshd cert inspect FILE

issue    writes OUT/cert.pem, OUT/key.pem (0600) and OUT/ca.pem: a leaf certificate for the
         identity (URI SAN), for both client and server authentication.
inspect  prints identity, issuer, validity and SHA-256 fingerprint of a certificate.
`;

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function fail(message: string, help: string): number {
  process.stderr.write(`meshd: ${message}\n\n${help}`);
  return 2;
}

function ttlOf(text: string | undefined, fallback: string): number | string {
  const ms = parseDuration(text ?? fallback);
  if (ms === undefined || ms <= 0) return `--ttl expects a duration like "24h", got "${String(text)}"`;
  return ms;
}

export async function caCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(CA_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'init') return fail(`unknown ca command "${sub}"`, CA_HELP);
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { dir: { type: 'string' }, 'trust-domain': { type: 'string' }, ttl: { type: 'string' }, force: { type: 'boolean' } },
      strict: true,
    }));
  } catch (err) {
    return fail((err as Error).message, CA_HELP);
  }
  const dir = values.dir;
  const domain = values['trust-domain'];
  if (dir === undefined || domain === undefined) return fail('--dir and --trust-domain are required', CA_HELP);
  const checked = parseSpiffeId(`spiffe://${domain}/x`);
  if (typeof checked === 'string') return fail(`--trust-domain "${domain}" is not a valid trust domain (lowercase letters, digits, "." and "-")`, CA_HELP);
  const ttl = ttlOf(values.ttl, '87600h');
  if (typeof ttl === 'string') return fail(ttl, CA_HELP);
  const certPath = join(dir, 'ca.pem');
  const keyPath = join(dir, 'ca-key.pem');
  if (values.force !== true && ((await exists(certPath)) || (await exists(keyPath)))) {
    return fail(`${dir} already holds a CA; use --force to replace it`, CA_HELP);
  }
  const ca = await createRootCa(domain, ttl);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(keyPath, ca.keyPem, { mode: 0o600 });
  await writeFile(certPath, ca.certPem, { mode: 0o644 });
  const info = inspectCertificate(ca.certPem);
  process.stdout.write(`created root CA for ${domain} in ${dir} (valid until ${info.notAfter.toISOString()}, sha256 ${info.fingerprintSha256})\n`);
  return 0;
}

export async function certCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(CERT_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'inspect') {
    const file = rest[0];
    if (file === undefined || rest.length > 1) return fail('cert inspect takes one FILE', CERT_HELP);
    let pem: string;
    try {
      pem = await readFile(file, 'utf8');
    } catch (err) {
      process.stderr.write(`meshd: cannot read ${file}: ${(err as Error).message}\n`);
      return 1;
    }
    let info;
    try {
      info = inspectCertificate(pem);
    } catch (err) {
      process.stderr.write(`meshd: ${file} is not a PEM certificate: ${(err as Error).message}\n`);
      return 1;
    }
    const now = Date.now();
    const state = now < info.notBefore.getTime() ? 'NOT YET VALID' : now > info.notAfter.getTime() ? 'EXPIRED' : 'valid';
    process.stdout.write(
      [
        `identity:    ${info.identities.join(', ') || '(none)'}`,
        `subject:     ${info.subject}`,
        `issuer:      ${info.issuer}`,
        `ca:          ${info.isCa ? 'yes' : 'no'}`,
        `not before:  ${info.notBefore.toISOString()}`,
        `not after:   ${info.notAfter.toISOString()}  (${state})`,
        `serial:      ${info.serial}`,
        `sha256:      ${info.fingerprintSha256}`,
        '',
      ].join('\n'),
    );
    return 0;
  }
  if (sub !== 'issue') return fail(`unknown cert command "${sub}"`, CERT_HELP);
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { ca: { type: 'string' }, identity: { type: 'string' }, ttl: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean' } },
      strict: true,
    }));
  } catch (err) {
    return fail((err as Error).message, CERT_HELP);
  }
  if (values.ca === undefined || values.identity === undefined || values.out === undefined) return fail('--ca, --identity and --out are required', CERT_HELP);
  const parsed = parseSpiffeId(values.identity);
  if (typeof parsed === 'string') return fail(parsed, CERT_HELP);
  const ttl = ttlOf(values.ttl, '24h');
  if (typeof ttl === 'string') return fail(ttl, CERT_HELP);
  let caCert: string;
  let caKey: string;
  try {
    caCert = await readFile(join(values.ca, 'ca.pem'), 'utf8');
    caKey = await readFile(join(values.ca, 'ca-key.pem'), 'utf8');
  } catch (err) {
    process.stderr.write(`meshd: cannot read the CA in ${values.ca}: ${(err as Error).message}\n`);
    return 1;
  }
  const caDomain = inspectCertificate(caCert).identities.map((i) => i.replace('spiffe://', ''))[0];
  if (caDomain !== undefined && caDomain !== parsed.trustDomain) {
    return fail(`identity is in trust domain "${parsed.trustDomain}" but the CA in ${values.ca} is for "${caDomain}"`, CERT_HELP);
  }
  const certPath = join(values.out, 'cert.pem');
  if (values.force !== true && (await exists(certPath))) return fail(`${certPath} exists; use --force to replace it`, CERT_HELP);
  const leaf = await issueLeaf({ certPem: caCert, keyPem: caKey }, values.identity, ttl);
  await mkdir(values.out, { recursive: true, mode: 0o700 });
  // Key first and cert last: a watcher that reloads on cert.pem never sees a new cert with the old key.
  await writeFile(join(values.out, 'key.pem'), leaf.keyPem, { mode: 0o600 });
  await writeFile(join(values.out, 'ca.pem'), caCert, { mode: 0o644 });
  await writeFile(certPath, leaf.certPem, { mode: 0o644 });
  const info = inspectCertificate(leaf.certPem);
  process.stdout.write(`issued ${values.identity} into ${values.out} (valid until ${info.notAfter.toISOString()}, sha256 ${info.fingerprintSha256})\n`);
  return 0;
}
