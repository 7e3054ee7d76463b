/**
 * The admin API's changes: fault injections (add, list, remove) and canary
 * commands. Who may change things is stricter than who may read: a change
 * must come from loopback (or `admin.allowChangesFrom`), as JSON (a web
 * page cannot send that cross-origin without a preflight meshd never
 * answers), and without an Origin field (browsers add one; curl and
 * scripts do not). Input is validated against the config's own schema
 * and rules, and every injection expires by itself.
 */
import type { IncomingMessage } from 'node:http';
import { isLoopback } from '../config/address.ts';
import { normaliseFault } from '../config/normalise-traffic.ts';
import type { RawFault } from '../config/raw.ts';
import { FAULT_SCHEMA } from '../config/traffic-schema.ts';
import { checkFault } from '../config/traffic-rules.ts';
import type { FaultSpec } from '../config/types.ts';
import { compileSchema, formatPath } from '../config/validate.ts';
import type { SourceFilter } from '../listeners/source-filter.ts';

/** Longest injection the admin API accepts: an experiment, not a configuration. */
export const MAX_ADMIN_FAULT_MS = 24 * 3_600_000;
const MAX_BODY_BYTES = 64 * 1024;

const validateFault = compileSchema({
  ...FAULT_SCHEMA,
  required: [...FAULT_SCHEMA.required, 'service'],
  properties: { ...FAULT_SCHEMA.properties, service: { type: 'string', minLength: 1 } },
});

export interface ChangeAnswer {
  readonly status: number;
  readonly body: unknown;
}

/** What the daemon does for the admin API's changes. */
export interface ChangeTarget {
  addFault(service: string, fault: FaultSpec): ChangeAnswer;
  removeFault(service: string, name: string): ChangeAnswer;
  listFaults(): ChangeAnswer;
  canary(service: string, command: string): ChangeAnswer;
}

/** Why this request may not change anything, or undefined. */
export function changeRefusal(req: IncomingMessage, allowFrom: SourceFilter | undefined): ChangeAnswer | undefined {
  const remote = req.socket.remoteAddress ?? '';
  const local = isLoopback(remote.startsWith('::ffff:') ? remote.slice(7) : remote);
  if (!local && allowFrom?.allows(remote) !== true) {
    return { status: 403, body: { error: 'forbidden', message: 'changes are accepted from loopback only (or admin.allowChangesFrom)' } };
  }
  if (req.headers.origin !== undefined)
    return { status: 403, body: { error: 'forbidden', message: 'changes are not accepted from web pages (Origin present)' } };
  if (req.method === 'POST' && req.headers['content-type']?.split(';')[0]?.trim().toLowerCase() !== 'application/json') {
    return { status: 415, body: { error: 'unsupported_media_type', message: 'send the change as application/json' } };
  }
  return undefined;
}

/** Reads a JSON body of at most 64 KiB; undefined when it is not JSON or too large. */
export async function readJson(req: IncomingMessage): Promise<{ value: unknown } | { error: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return { error: `the body exceeds ${MAX_BODY_BYTES} bytes` };
    chunks.push(chunk);
  }
  try {
    return { value: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown };
  } catch (err) {
    return { error: `not JSON: ${(err as Error).message}` };
  }
}

/** A fault from the admin API: the config's schema and rules, plus a bounded duration. */
export function parseAdminFault(value: unknown): { service: string; fault: FaultSpec } | { problems: string[] } {
  if (!validateFault(value)) {
    return { problems: (validateFault.errors ?? []).map((e) => `${e.instancePath === '' ? '(body)' : e.instancePath}: ${e.message ?? 'invalid'}`) };
  }
  const raw = value as RawFault & { service: string };
  const fault = normaliseFault(raw);
  const problems: string[] = [];
  checkFault(fault, raw, [], (path, message) => problems.push(`${path.length === 0 ? '(body)' : formatPath(path)}: ${message}`), undefined);
  if (fault.durationMs > MAX_ADMIN_FAULT_MS) problems.push('duration: at most 24h through the admin API');
  return problems.length > 0 ? { problems } : { service: raw.service, fault };
}
