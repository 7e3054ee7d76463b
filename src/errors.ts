/**
 * Every failure meshd reports to a caller, with its stable code and the one
 * place where a code becomes an HTTP status. Tests assert on codes, never on
 * message text.
 */

/** Stable error codes; callers and dashboards may rely on these strings. */
export const ERROR_STATUS = {
  bad_request: 400,
  forbidden: 403,
  unknown_service: 404,
  // The Service's HTTPRoutes match nothing in this request (Gateway API answers 404).
  no_route: 404,
  method_not_allowed: 405,
  // A peer asked this node to deliver to a pod that is not one of its own ready pods of that Service.
  misdirected: 421,
  request_timeout: 408,
  headers_too_large: 431,
  // The caller went away before its answer (nginx's and Envoy's 499); it is recorded, never sent.
  client_closed: 499,
  // A local token-bucket rate limit (service, route or caller) is spent; Retry-After says when a token returns.
  rate_limited: 429,
  internal: 500,
  // The route that matched has no backends (Gateway API answers 500).
  no_backend: 500,
  connect_failed: 502,
  upstream_reset: 502,
  upstream_protocol_error: 502,
  no_endpoints: 503,
  overloaded: 503,
  draining: 503,
  upstream_timeout: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** An error meshd answers a caller with; `code` is stable, `message` is for humans. */
export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds a caller should wait before retrying (sent as Retry-After). */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/** Header naming the error code on every response meshd itself generates. */
export const ERROR_HEADER = 'x-meshd-error';

/** Converts anything thrown inside the data path to a MeshError. */
export function toMeshError(err: unknown): MeshError {
  if (err instanceof MeshError) return err;
  return new MeshError('internal', 'internal error', { cause: err });
}

/** The JSON body sent with a MeshError. */
export function errorBody(err: MeshError): string {
  return JSON.stringify({ error: err.code, message: err.message });
}

/** A configuration problem at a path in the file; `meshd check` prints these. */
export interface ConfigProblem {
  /** Dotted path in the file, e.g. `services.users.endpoints[0].address`. */
  path: string;
  message: string;
  /** 1-based line in the YAML source, when known. */
  line?: number;
}

/** Thrown when a config file cannot be loaded; carries every problem found. */
export class ConfigError extends Error {
  readonly code = 'invalid_config';
  readonly problems: readonly ConfigProblem[];
  readonly file: string;

  constructor(file: string, problems: readonly ConfigProblem[]) {
    super(`${file}: ${problems.length} problem(s)\n${formatProblems(file, problems)}`);
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}

export function formatProblems(file: string, problems: readonly ConfigProblem[]): string {
  return problems.map((p) => `  ${file}${p.line === undefined ? '' : `:${p.line}`}: ${p.path === '' ? '(top level)' : p.path}: ${p.message}`).join('\n');
}
