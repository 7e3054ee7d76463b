/**
 * A response the forwarder did not relay because the exchange's response
 * classifier (set by the retry layer for each attempt) chose to try again.
 */
export class RetryableStatus extends Error {
  /** "503", or "grpc-14" for a gRPC status. */
  readonly reason: string;
  constructor(reason: string) {
    super(`retryable response ${reason}`);
    this.reason = reason;
  }
}
