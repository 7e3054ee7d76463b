/**
 * Rules of a service's traffic policy that the schema cannot state: names
 * that must be unique, regular expressions that must compile, header
 * modifiers that may not touch the fields meshd owns, filters whose key
 * must match their type, faults that must do something, a canary whose
 * steps climb to 100 %. Shared by the config and the admin API's faults.
 */
import { wholeValueRegex } from '../routing/linear-regex.ts';
import { identityPatternProblem } from '../identity/spiffe.ts';
import type { RawFault, RawPathModifier, RawRouteRule } from './raw.ts';
import type { ServiceRule, Report } from './rules.ts';
import type { AccessRule, CanaryConfig, FaultSpec, HeaderModifier, RouteRule, ValueMatch } from './types.ts';
import type { PathSegment } from './validate.ts';

/** Fields a route may not set or remove: framing, hop-by-hop, the authority, and meshd's own signals. */
const PROTECTED_FIELDS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'forwarded',
  'x-forwarded-for',
]);

/** Why a header modifier may not touch `name`, or undefined. */
function protectedFieldProblem(name: string): string | undefined {
  if (name.startsWith(':')) return 'pseudo-header fields belong to the protocol';
  if (name.replaceAll('_', '-').startsWith('x-meshd-')) return "x-meshd-* fields are meshd's own signals";
  if (PROTECTED_FIELDS.has(name)) return 'framing, hop-by-hop and forwarding fields are set by meshd';
  return undefined;
}

function regexProblem(pattern: string): string | undefined {
  try {
    wholeValueRegex(pattern);
    return undefined;
  } catch (err) {
    const message = (err as Error).message;
    if (message.includes('linear time')) return 'needs backreferences or lookaround, which route patterns do not have (RE2 syntax, as Envoy)';
    return `not a valid regular expression: ${message}`;
  }
}

function checkValueMatches(list: readonly ValueMatch[], path: PathSegment[], report: Report): void {
  list.forEach((m, i) => {
    if (m.type !== 'RegularExpression') return;
    const problem = regexProblem(m.value);
    if (problem !== undefined) report([...path, i, 'value'], problem);
  });
}

function checkCallers(list: readonly string[], path: PathSegment[], report: Report): void {
  list.forEach((pattern, i) => {
    const problem = identityPatternProblem(pattern);
    if (problem !== undefined) report([...path, i], problem);
  });
}

function checkModifier(modifier: HeaderModifier | undefined, path: PathSegment[], report: Report): void {
  if (modifier === undefined) return;
  for (const list of ['set', 'add'] as const) {
    modifier[list].forEach((f, i) => {
      const problem = protectedFieldProblem(f.name);
      if (problem !== undefined) report([...path, list, i, 'name'], problem);
    });
  }
  modifier.remove.forEach((name, i) => {
    const problem = protectedFieldProblem(name);
    if (problem !== undefined) report([...path, 'remove', i], problem);
  });
}

/** Gateway API: each filter carries the key its type names, and nothing else; a type appears once per rule. */
function checkFilters(raw: RawRouteRule | undefined, path: PathSegment[], report: Report): void {
  const keyOf = {
    RequestHeaderModifier: 'requestHeaderModifier',
    ResponseHeaderModifier: 'responseHeaderModifier',
    RequestMirror: 'requestMirror',
    RequestRedirect: 'requestRedirect',
    URLRewrite: 'urlRewrite',
  } as const;
  const seen = new Set<string>();
  (raw?.filters ?? []).forEach((f, i) => {
    const want = keyOf[f.type];
    const keys = Object.keys(f).filter((k) => k !== 'type');
    if (keys.length !== 1 || keys[0] !== want) report([...path, 'filters', i], `type ${f.type} takes exactly the key ${want}`);
    if (seen.has(f.type)) report([...path, 'filters', i, 'type'], `${f.type} may appear once per rule`);
    seen.add(f.type);
    const modifier = f.requestRedirect?.path ?? f.urlRewrite?.path;
    if (modifier !== undefined) checkPathModifier(modifier, [...path, 'filters', i, want, 'path'], report);
  });
}

/** Gateway API: the type names the one replacement it carries. */
function checkPathModifier(modifier: RawPathModifier, path: PathSegment[], report: Report): void {
  const want = modifier.type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
  const other = modifier.type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
  if (modifier[want] === undefined) report([...path, want], `type ${modifier.type} needs ${want}`);
  if (modifier[other] !== undefined) report([...path, other], `not used with type ${modifier.type}`);
}

/** RequestRedirect answers by itself; URLRewrite's prefix replacement needs the prefix a PathPrefix match matched. */
function checkRedirectAndRewrite(rule: RouteRule, path: PathSegment[], report: Report): void {
  const at = [...path, 'filters'];
  if (rule.redirect !== undefined && rule.rewrite !== undefined) report(at, 'RequestRedirect and URLRewrite cannot be used in the same rule');
  if (rule.redirect !== undefined && rule.backendRefs.length > 0)
    report([...path, 'backendRefs'], 'a rule with RequestRedirect answers the request itself: it takes no backendRefs');
  if (rule.redirect !== undefined && rule.mirror !== undefined) report(at, 'a rule with RequestRedirect forwards nothing for RequestMirror to copy');
  const prefixed = rule.redirect?.path?.type === 'ReplacePrefixMatch' || rule.rewrite?.path?.type === 'ReplacePrefixMatch';
  if (prefixed && rule.matches.some((m) => m.path !== undefined && m.path.type !== 'PathPrefix'))
    report([...path, 'matches'], 'ReplacePrefixMatch needs every match of the rule to be a PathPrefix match');
}

function checkRoute(rule: RouteRule, raw: RawRouteRule | undefined, path: PathSegment[], report: Report): void {
  rule.matches.forEach((m, i) => {
    const at = [...path, 'matches', i];
    if (m.path?.type === 'RegularExpression') {
      const problem = regexProblem(m.path.value);
      if (problem !== undefined) report([...at, 'path', 'value'], problem);
    } else if (m.path !== undefined && !m.path.value.startsWith('/')) report([...at, 'path', 'value'], 'must start with "/"');
    checkValueMatches(m.headers, [...at, 'headers'], report);
    checkValueMatches(m.queryParams, [...at, 'queryParams'], report);
    checkCallers(m.callers, [...at, 'callers'], report);
  });
  checkFilters(raw, path, report);
  checkRedirectAndRewrite(rule, path, report);
  checkModifier(rule.requestHeaders, [...path, 'filters', 'requestHeaderModifier'], report);
  checkModifier(rule.responseHeaders, [...path, 'filters', 'responseHeaderModifier'], report);
  if (rule.backendRefs.length > 0 && rule.backendRefs.every((b) => b.weight === 0))
    report([...path, 'backendRefs'], 'at least one backend needs a weight above 0');
  if (rule.timeoutMs === 0) report([...path, 'timeouts', 'request'], 'must be greater than 0s');
  if (rule.backendTimeoutMs !== undefined && rule.timeoutMs !== undefined && rule.backendTimeoutMs > rule.timeoutMs) {
    report([...path, 'timeouts', 'backendRequest'], 'must not exceed timeouts.request');
  }
}

/** Every problem of one rule, as text (rules translated from the cluster's HTTPRoutes). */
export function routeRuleProblems(rule: RouteRule, raw: RawRouteRule): string[] {
  const problems: string[] = [];
  checkRoute(rule, raw, [], (path, message) => problems.push(path.length === 0 ? message : `${path.join('.')}: ${message}`));
  return problems;
}

/** Names are how metrics, logs, faults and the admin API refer to routes. */
export const routesAreValid: ServiceRule = ({ name, raw, config }, report) => {
  const seen = new Set<string>();
  config.routes.forEach((rule, i) => {
    const path: PathSegment[] = ['services', name, 'routes', i];
    if (seen.has(rule.name)) report([...path, 'name'], `duplicate route name "${rule.name}"`);
    seen.add(rule.name);
    checkRoute(rule, raw.routes?.[i], path, report);
  });
};

export function checkAccessRules(rules: readonly AccessRule[], path: PathSegment[], report: Report): void {
  rules.forEach((r, i) => {
    checkCallers(r.callers, [...path, i, 'callers'], report);
    r.paths.forEach((p, j) => {
      if (p.indexOf('*') !== -1 && p.indexOf('*') !== p.length - 1) report([...path, i, 'paths', j], '"*" may only end a path prefix ("/admin/*")');
    });
  });
}

export const accessRulesAreValid: ServiceRule = ({ name, config }, report) => {
  checkAccessRules(config.access, ['services', name, 'access'], report);
};

/** One fault injection, as the config or the admin API writes it. */
export function checkFault(fault: FaultSpec, raw: RawFault, path: PathSegment[], report: Report, routes: readonly RouteRule[] | undefined): void {
  if (fault.delay === undefined && fault.abort === undefined) report(path, 'a fault needs a delay, an abort or both');
  if (raw.abort !== undefined && (raw.abort.status === undefined) === (raw.abort.reset === undefined)) {
    report([...path, 'abort'], 'set exactly one of status: CODE or reset: true');
  }
  if (fault.durationMs === 0) report([...path, 'duration'], 'must be greater than 0s (every injection expires by itself)');
  checkValueMatches(fault.match.headers, [...path, 'match', 'headers'], report);
  checkCallers(fault.match.callers, [...path, 'match', 'callers'], report);
  const route = fault.match.route;
  if (routes !== undefined && route !== undefined && !routes.some((r) => r.name === route)) report([...path, 'match', 'route'], `no route named "${route}"`);
}

export const faultsAreValid: ServiceRule = ({ name, raw, config }, report) => {
  const seen = new Set<string>();
  config.faults.forEach((fault, i) => {
    const path: PathSegment[] = ['services', name, 'faults', i];
    if (seen.has(fault.name)) report([...path, 'name'], `duplicate fault name "${fault.name}"`);
    seen.add(fault.name);
    const written = raw.faults?.[i];
    if (written !== undefined) checkFault(fault, written, path, report, config.routes);
  });
};

/** Why a canary's settings cannot drive a rollout. */
export function canaryProblems(canary: CanaryConfig): { key: string; message: string }[] {
  const problems: { key: string; message: string }[] = [];
  const { steps } = canary;
  if (steps.some((s, i) => i > 0 && s <= (steps[i - 1] ?? 0))) problems.push({ key: 'steps', message: 'must climb: each step above the previous one' });
  if (steps[steps.length - 1] !== 100)
    problems.push({ key: 'steps', message: 'the last step must be 100 (the canary takes all traffic before it is promoted)' });
  if (canary.dwellMs === 0) problems.push({ key: 'dwell', message: 'must be greater than 0s' });
  if (JSON.stringify(canary.stable) === JSON.stringify(canary.canary)) problems.push({ key: 'canary', message: 'names the same subset as stable' });
  return problems;
}

export const canaryIsValid: ServiceRule = ({ name, config }, report) => {
  if (config.canary === undefined) return;
  for (const p of canaryProblems(config.canary)) report(['services', name, 'canary', p.key], p.message);
};
