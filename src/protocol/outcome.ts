/**
 * How one upstream attempt ended, as the balancer and the feedback loop see
 * it. Client aborts are not the endpoint's fault and are not held against it.
 */
export type Outcome = 'success' | 'http_5xx' | 'grpc_error' | 'connect_failed' | 'timeout' | 'reset' | 'protocol_error' | 'client_abort';

export const OUTCOMES: readonly Outcome[] = ['success', 'http_5xx', 'grpc_error', 'connect_failed', 'timeout', 'reset', 'protocol_error', 'client_abort'];

/** True when the outcome says the endpoint (or the path to it) failed. */
export function isEndpointFailure(outcome: Outcome): boolean {
  return outcome !== 'success' && outcome !== 'client_abort';
}
