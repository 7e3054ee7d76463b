/**
 * Kubernetes mesh mode, raw TCP to a pod behind another node's meshd: the
 * first line inside the mTLS stream names the Service, the pod and the
 * calling pod, as an HTTP request's `x-meshd-*` fields would. A JSON object
 * of those fields, one line, at most MAX_PREAMBLE_BYTES.
 */
import { MESH_SERVICE_HEADER, MESH_TARGET_HEADER } from './fields.ts';

export const MAX_PREAMBLE_BYTES = 4_096;

/** The line a sending meshd writes first: the Service ("name.namespace"), the pod ("ip:port"), the caller's fields. */
export function encodePodPreamble(service: string, target: string, callerFields: readonly string[] | undefined): string {
  const fields: Record<string, string> = { [MESH_SERVICE_HEADER]: service, [MESH_TARGET_HEADER]: target };
  for (let i = 0; callerFields !== undefined && i + 1 < callerFields.length; i += 2) fields[callerFields[i] as string] = callerFields[i + 1] as string;
  return `${JSON.stringify(fields)}\n`;
}

/** The fields of a preamble line (without its newline), or why it is not one. */
export function parsePodPreamble(line: string): Record<string, string> | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return 'the stream does not start with a JSON preamble line';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'the preamble is not a JSON object';
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value !== 'string') return `preamble field ${name} is not a string`;
    out[name.toLowerCase()] = value;
  }
  return out;
}
