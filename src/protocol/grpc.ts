/** gRPC facts the data path needs: status codes and the deadline header. */

/**
 * gRPC statuses that say the server (not the request) failed: UNKNOWN, DEADLINE_EXCEEDED,
 * RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE, DATA_LOSS. The others (NOT_FOUND,
 * INVALID_ARGUMENT, PERMISSION_DENIED, …) are the caller's, like HTTP 4xx, and must
 * not count against an endpoint.
 */
export const GRPC_SERVER_FAILURES: ReadonlySet<number> = new Set([2, 4, 8, 13, 14, 15]);

/** The fields a gRPC status travels in (trailers, or headers of a trailers-only answer). */
export const GRPC_TRAILER_FIELDS = ['grpc-status', 'grpc-message', 'grpc-status-details-bin'] as const;

/** `grpc-status` of a header or trailer set; undefined when absent or malformed. */
export function grpcStatusOf(fields: Readonly<Record<string, string | string[] | undefined>>): number | undefined {
  const value = fields['grpc-status'];
  if (typeof value !== 'string') return undefined;
  const n = Number(value);
  return Number.isInteger(n) ? n : undefined;
}

const GRPC_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };

/** Parses gRPC's `grpc-timeout` ("100m", "5S"; at most 8 digits); undefined when malformed. */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (match === null) return undefined;
  return Number(match[1]) * GRPC_UNIT_MS[match[2] as string]!;
}

/**
 * The HTTP status a gRPC status stands for (the mapping grpc-gateway and Envoy's gRPC-JSON bridge
 * use): what metrics, the dependency map and access logs classify a gRPC answer by, since its HTTP
 * status is 200 whatever happened. UNAVAILABLE is a 503, NOT_FOUND a 404, OK a 200.
 */
export function httpStatusOfGrpc(code: number): number {
  return GRPC_HTTP_STATUS[code] ?? 500;
}

/** The status an answer is judged by: its HTTP status, or for a gRPC answer (HTTP 200) the one its `grpc-status` stands for. */
export function judgedStatus(httpStatus: number, grpcStatus: number | undefined): number {
  return grpcStatus === undefined || grpcStatus === 0 || httpStatus !== 200 ? httpStatus : httpStatusOfGrpc(grpcStatus);
}

const GRPC_HTTP_STATUS: readonly number[] = [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401];

/** `grpc-timeout` for `ms` milliseconds (at least 1), in milliseconds while 8 digits hold it, else seconds. */
export function formatGrpcTimeout(ms: number): string {
  const whole = Math.max(1, Math.floor(ms));
  return whole <= 99_999_999 ? `${String(whole)}m` : `${String(Math.min(99_999_999, Math.ceil(whole / 1000)))}S`;
}
