/**
 * Regular expressions from routes run on V8's linear-time engine: no request can make matching take
 * longer than a time proportional to its length. On the default backtracking engine a header
 * regex like `(\w+\s?)*` against 31 characters stops the event loop for seconds, and with it every
 * caller. As with Envoy's RE2, backreferences and lookaround are not available; a pattern that
 * needs them is refused when the config is checked. The engine is behind a V8 flag, set here before
 * any route is compiled (it is read when a RegExp is made).
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--enable-experimental-regexp-engine');

/** A regular expression matching the whole of a value, in linear time; throws for a pattern the engine cannot run. */
export function wholeValueRegex(pattern: string): RegExp {
  // eslint-disable-next-line no-invalid-regexp -- "l" is V8's linear-engine flag, enabled above
  return new RegExp(`^(?:${pattern})$`, 'l');
}
