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
