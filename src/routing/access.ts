/**
 * Access rules by caller identity, method and path, in the shape of Istio's
 * AuthorizationPolicy: any matching deny rule refuses; then, when allow
 * rules exist, one of them must match. A rule's unset conditions match
 * anything. Paths are judged normalised (./match-path.ts), so an encoded or
 * dotted spelling cannot slip past a deny. A TCP connection has no method
 * or path: as in Istio, a deny rule then judges its callers alone (it
 * refuses more, never less), and an allow rule that names methods or paths
 * never admits it.
 */
import type { AccessRule } from '../config/types.ts';
import { identityPattern } from '../identity/spiffe.ts';
import { matchPath } from './match-path.ts';
import { MeshError } from '../errors.ts';
import type { Layer } from '../stack/layer.ts';

/** `request` undefined: a TCP connection. */
export type AccessCheck = (request: { method: string; target: string } | undefined, caller: string | undefined) => AccessVerdict;

export interface AccessVerdict {
  readonly allowed: boolean;
  readonly reason: string;
}

/** undefined when there are no rules (everything allowed, nothing to check per request). */
export function compileAccess(rules: readonly AccessRule[]): AccessCheck | undefined {
  if (rules.length === 0) return undefined;
  // Every verdict is made once here: judging a request allocates nothing.
  const compiled = rules.map((rule, i) => ({
    action: rule.action,
    test: compileRule(rule),
    verdict: Object.freeze(
      rule.action === 'deny' ? { allowed: false, reason: `access rule ${i} denies it` } : { allowed: true, reason: `access rule ${i} allows it` },
    ),
  }));
  const denies = compiled.filter((r) => r.action === 'deny');
  const allows = compiled.filter((r) => r.action === 'allow');
  return (request, caller) => {
    const method = request?.method;
    const path = request === undefined ? undefined : matchPath(request.target);
    for (const r of denies) if (r.test(method, path, caller)) return r.verdict;
    if (allows.length === 0) return NOT_DENIED;
    for (const r of allows) if (r.test(method, path, caller)) return r.verdict;
    return NOT_ALLOWED;
  };
}

const NOT_DENIED: AccessVerdict = Object.freeze({ allowed: true, reason: 'no rule denies it' });
const NOT_ALLOWED: AccessVerdict = Object.freeze({ allowed: false, reason: 'no access rule allows it' });

function compileRule(rule: AccessRule): (method: string | undefined, path: string | undefined, caller: string | undefined) => boolean {
  const callers = rule.callers.map(identityPattern);
  const methods = new Set(rule.methods);
  const paths = rule.paths.map(pathPattern);
  const deny = rule.action === 'deny';
  return (method, path, caller) =>
    (callers.length === 0 || (caller !== undefined && callers.some((c) => c(caller)))) &&
    (methods.size === 0 || (method === undefined ? deny : methods.has(method))) &&
    (paths.length === 0 || (path === undefined ? deny : paths.some((p) => p(path))));
}

export interface AccessRecorder {
  authorization(service: string, allowed: boolean): void;
}

/**
 * The 403 forbidden for what the rules do not admit (counted), or undefined; for requests, WebSocket
 * handshakes and TCP connections (`request` undefined) alike.
 */
export function accessRefusal(
  check: AccessCheck | undefined,
  request: { method: string; target: string } | undefined,
  caller: string | undefined,
  service: string,
  recorder: AccessRecorder,
): MeshError | undefined {
  const verdict = check?.(request, caller);
  if (verdict === undefined || verdict.allowed) return undefined;
  recorder.authorization(service, false);
  const what = request === undefined ? 'a connection' : `${request.method} ${request.target.split('?')[0]}`;
  return new MeshError('forbidden', `${what} to "${service}" refused: ${verdict.reason}`);
}

/** Refuses with 403 forbidden what the rules do not admit, judged on the verified caller. */
export function accessLayer(check: AccessCheck, service: string, recorder: AccessRecorder): Layer {
  return (next) => (ex) => {
    const refused = accessRefusal(check, { method: ex.head.method, target: ex.head.path }, ex.caller, service, recorder);
    return refused === undefined ? next(ex) : Promise.reject(refused);
  };
}

/** "/admin" exactly, or "/admin/*": every path that starts with "/admin/" (and "/admin" itself). */
function pathPattern(pattern: string): (path: string) => boolean {
  if (!pattern.endsWith('*')) return (path) => path === pattern;
  const prefix = pattern.slice(0, -1);
  const bare = prefix.endsWith('/') ? prefix.slice(0, -1) : undefined;
  return (path) => path.startsWith(prefix) || path === bare;
}
