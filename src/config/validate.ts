/**
 * Runs a parsed YAML document through the schema and turns each failure into
 * a problem naming its path in the file, its line, and what was expected.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { isMap, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { ConfigProblem } from '../errors.ts';
import { NODE_POD_CIDRS, parseCidr, parseSocketAddress } from './address.ts';
import { parseDuration, parseSize } from './units.ts';

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true });
ajv.addFormat('duration', { type: 'string', validate: (s: string) => parseDuration(s) !== undefined });
ajv.addFormat('size', { type: 'string', validate: (s: string) => parseSize(s) !== undefined });
ajv.addFormat('listen-address', {
  type: 'string',
  validate: (s: string) => typeof parseSocketAddress(s, { allowPortZero: true }) !== 'string',
});
ajv.addFormat('source-range', { type: 'string', validate: (s: string) => s === NODE_POD_CIDRS || parseCidr(s) !== undefined });
ajv.addFormat('endpoint-address', {
  type: 'string',
  validate: (s: string) => typeof parseSocketAddress(s, { allowPortZero: false }) !== 'string',
});

/** Compiles a schema once; the returned function validates a plain value. */
export function compileSchema(schema: object): ValidateFunction {
  return ajv.compile(schema);
}

export type PathSegment = string | number;

/** `services.users.endpoints[0].address` */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const s of segments) out += typeof s === 'number' ? `[${s}]` : out === '' ? s : `.${s}`;
  return out;
}

/** Parses YAML text; on syntax errors returns problems with their lines. */
export function parseYaml(text: string): { value: unknown; locate: (path: readonly PathSegment[]) => number | undefined } | ConfigProblem[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return doc.errors.map((e) => {
      const line = e.linePos?.[0]?.line ?? lineCounter.linePos(e.pos[0]).line;
      return { path: '', message: `not valid YAML: ${e.message.split('\n')[0]}`, line };
    });
  }
  return { value: doc.toJS({ maxAliasCount: 100 }) as unknown, locate: (path) => lineOf(doc, lineCounter, path) };
}

function lineOf(doc: Document, lines: LineCounter, path: readonly PathSegment[]): number | undefined {
  let node: unknown = doc.contents;
  let offset: number | undefined = rangeStart(node);
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === segment);
      if (pair === undefined) break;
      offset = rangeStart(pair.key) ?? offset;
      node = pair.value;
      offset = rangeStart(node) ?? offset;
    } else if (isSeq(node) && typeof segment === 'number') {
      node = node.items[segment];
      offset = rangeStart(node) ?? offset;
    } else break;
  }
  return offset === undefined ? undefined : lines.linePos(offset).line;
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range?.[0];
}

/** Validates `value`; returns one human problem per schema failure. */
export function schemaProblems(
  validate: ValidateFunction,
  value: unknown,
  locate: (path: readonly PathSegment[]) => number | undefined,
  basePath: readonly PathSegment[] = [],
): ConfigProblem[] {
  if (validate(value)) return [];
  const errors = validate.errors ?? [];
  // anyOf branches each report a failure; keep only the summary for that spot.
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const problems: ConfigProblem[] = [];
  const seen = new Set<string>();
  for (const error of errors) {
    if (error.keyword !== 'anyOf' && anyOfPaths.has(error.instancePath)) continue;
    if (error.keyword === 'if' || error.keyword === 'propertyNames') continue;
    const path = [...basePath, ...pointerSegments(error.instancePath)];
    const extra = error.keyword === 'additionalProperties' ? (error.params as { additionalProperty: string }).additionalProperty : undefined;
    if (extra !== undefined) path.push(extra);
    if (error.propertyName !== undefined) path.push(error.propertyName);
    const message = describe(error, valueAt(value, pointerSegments(error.instancePath)));
    const key = `${formatPath(path)}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const line = locate(path);
    problems.push({ path: formatPath(path), message, ...(line === undefined ? {} : { line }) });
  }
  return problems;
}

function pointerSegments(pointer: string): PathSegment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let v: unknown = root;
  for (const s of path) v = (v as Record<string | number, unknown> | undefined)?.[s];
  return v;
}

function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' ? String(v) : typeof v;
}

function describe(error: ErrorObject, value: unknown): string {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'format':
      switch (params['format']) {
        case 'duration':
          return `expected a duration like "250ms", got ${shown(value)}`;
        case 'size':
          return `expected a size like "16KiB", got ${shown(value)}`;
        case 'source-range':
          return `expected an address range like "10.244.0.0/16" or "::1/128", or ${NODE_POD_CIDRS}, got ${shown(value)}`;
        case 'listen-address':
        case 'endpoint-address': {
          const reason = parseSocketAddress(String(value), { allowPortZero: params['format'] === 'listen-address' });
          return `expected an address like "127.0.0.1:4140", got ${shown(value)}${typeof reason === 'string' ? ` (${reason})` : ''}`;
        }
        default:
          return `expected ${String(params['format'])}, got ${shown(value)}`;
      }
    case 'additionalProperties': {
      const known = Object.keys((error.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return known.length === 0 ? 'unknown key' : `unknown key (expected one of: ${known.join(', ')})`;
    }
    case 'required':
      return `missing required key "${String(params['missingProperty'])}"`;
    case 'type': {
      // A bare number where a unit is required gets the unit hint, not just "expected a string".
      const format = (error.parentSchema as { format?: string } | undefined)?.format;
      if (format === 'duration') return `expected a duration like "250ms", got ${shown(value)}`;
      if (format === 'size') return `expected a size like "16KiB", got ${shown(value)}`;
      return `expected ${article(String(params['type']))}, got ${shown(value)}`;
    }
    case 'enum':
      return `expected one of ${(params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${shown(value)}`;
    case 'anyOf':
      return `expected "auto" or a positive integer, got ${shown(value)}`;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `expected a value ${String(params['comparison'])} ${String(params['limit'])}, got ${shown(value)}`;
    case 'minLength':
      return 'must not be empty';
    case 'pattern':
      if (String(params['pattern']).startsWith('^spiffe')) return `expected a SPIFFE ID like "spiffe://prod.example/host/web-2", got ${shown(value)}`;
      if (error.propertyName !== undefined) return `name ${JSON.stringify(error.propertyName)} must use lowercase letters, digits, "." and "-"`;
      return `does not match ${String(params['pattern'])}: ${shown(value)}`;
    default:
      return error.message ?? 'invalid';
  }
}

function article(type: string): string {
  const names: Record<string, string> = {
    object: 'a mapping',
    array: 'a list',
    integer: 'an integer',
    number: 'a number',
    string: 'a string',
    boolean: 'true or false',
  };
  return names[type] ?? type;
}
