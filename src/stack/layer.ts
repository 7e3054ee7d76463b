/**
 * The data path is a stack of small layers composed once per service (never
 * per request): each takes the next handler and returns a handler.
 */
import type { Exchange } from './exchange.ts';

/** Handles an exchange; resolves when the response is complete, rejects with a MeshError before it started. */
export type Handler = (exchange: Exchange) => Promise<void>;
export type Layer = (next: Handler) => Handler;

/** compose([a, b, c], terminal) → a(b(c(terminal))): the first layer sees the request first. */
export function compose(layers: readonly Layer[], terminal: Handler): Handler {
  let handler = terminal;
  for (let i = layers.length - 1; i >= 0; i--) {
    const layer = layers[i];
    if (typeof layer !== 'function') throw new TypeError(`layer ${i} is not a function`);
    handler = layer(handler);
    if (typeof handler !== 'function') throw new TypeError(`layer ${i} did not return a handler`);
  }
  return handler;
}
