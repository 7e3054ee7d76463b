/**
 * meshd's own header fields: what one meshd tells the next hop, the local
 * app, or a caller. Only meshd sets them; a caller's copy of any `x-meshd-*`
 * request field is dropped (proxy/headers.ts).
 */

/** Milliseconds the caller will still wait; meshd sets it on every upstream request. */
export const TIMEOUT_HEADER = 'x-meshd-timeout-ms';

/** Set by a meshd that shed the request because its local service is overloaded. */
export const OVERLOADED_HEADER = 'x-meshd-overloaded';

/** A caller marks a non-idempotent request safe to send again with `x-meshd-retryable: true`. */
export const RETRYABLE_HEADER = 'x-meshd-retryable';

/** The verified caller, as the local service sees it. */
export const PEER_IDENTITY_HEADER = 'x-meshd-peer-identity';
