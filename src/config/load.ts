/**
 * Config loading: YAML text → schema check → normalised (./normalise.ts) →
 * semantic rules (./rules.ts) → deep-frozen MeshConfig. File access is
 * injected so tests need no disk.
 */
import { dirname, resolve } from 'node:path';
import { ConfigError, type ConfigProblem } from '../errors.ts';
import { deepFreeze } from './deep-freeze.ts';
import { DEFAULT_CONFIG_SOURCE, DEFAULT_CONFIG_YAML } from './default.ts';
import { normaliseConfig, normaliseEndpoints } from './normalise.ts';
import type { RawConfig, RawEndpoint } from './raw.ts';
import { checkConfig, reportDuplicateEndpoints, type Report } from './rules.ts';
import { CONFIG_SCHEMA, ENDPOINTS_FILE_SCHEMA } from './schema.ts';
import type { EndpointSpec, MeshConfig } from './types.ts';
import { compileSchema, formatPath, parseYaml, schemaProblems, type PathSegment } from './validate.ts';

const validateConfig = compileSchema(CONFIG_SCHEMA);
const validateEndpointsFile = compileSchema(ENDPOINTS_FILE_SCHEMA);

export type ReadText = (path: string) => Promise<string>;

/** Loads and validates a config file; throws ConfigError naming every problem. */
export async function loadConfigFile(path: string, readText: ReadText): Promise<MeshConfig> {
  return (await loadConfigFileWithText(path, readText)).config;
}

/** As loadConfigFile, also returning the text it validated (to recognise unchanged files later). */
export async function loadConfigFileWithText(path: string, readText: ReadText): Promise<{ config: MeshConfig; text: string }> {
  let text: string;
  try {
    text = await readText(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : `cannot read: ${(err as Error).message}`;
    throw new ConfigError(path, [{ path: '', message: reason }]);
  }
  return { config: parseConfig(text, path, dirname(resolve(path))), text };
}

/** The embedded default config: outbound and admin on their default loopback addresses. */
export function defaultConfig(): MeshConfig {
  return parseConfig(DEFAULT_CONFIG_YAML, DEFAULT_CONFIG_SOURCE, process.cwd());
}

/** Parses config text; `baseDir` resolves relative file paths inside it. */
export function parseConfig(text: string, source: string, baseDir: string): MeshConfig {
  const parsed = parseYaml(text);
  if (Array.isArray(parsed)) throw new ConfigError(source, parsed);
  const raw = parsed.value ?? {};
  const problems = schemaProblems(validateConfig, raw, parsed.locate);
  if (problems.length > 0) throw new ConfigError(source, problems);
  // The schema accepted it, so it has the shape RawConfig describes.
  const document = raw as RawConfig;
  const config = normaliseConfig(document, source, baseDir);
  checkConfig({ raw: document, config }, reporterInto(problems, parsed.locate));
  if (problems.length > 0) throw new ConfigError(source, problems);
  return deepFreeze(config);
}

/** Parses an endpoints file (`{ endpoints: [...] }`) for the file discovery source. */
export function parseEndpointsFile(text: string, source: string): EndpointSpec[] {
  const parsed = parseYaml(text);
  if (Array.isArray(parsed)) throw new ConfigError(source, parsed);
  const problems = schemaProblems(validateEndpointsFile, parsed.value, parsed.locate);
  if (problems.length > 0) throw new ConfigError(source, problems);
  const endpoints = normaliseEndpoints((parsed.value as { endpoints: RawEndpoint[] }).endpoints);
  reportDuplicateEndpoints(endpoints, ['endpoints'], reporterInto(problems, parsed.locate));
  if (problems.length > 0) throw new ConfigError(source, problems);
  return endpoints.map((e) => Object.freeze(e));
}

/** A Report that appends each problem to `problems`, with its line in the file where known. */
function reporterInto(problems: ConfigProblem[], locate: (path: readonly PathSegment[]) => number | undefined): Report {
  return (path, message) => {
    const line = locate(path);
    problems.push({ path: formatPath(path), message, ...(line === undefined ? {} : { line }) });
  };
}
