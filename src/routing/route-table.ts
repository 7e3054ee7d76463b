/**
 * A service's routes, compiled once per config: Gateway API HTTPRoute
 * matches (path Exact / PathPrefix / RegularExpression, method, headers,
 * query parameters) plus meshd's `callers` (the verified identity), chosen
 * by Gateway API precedence rather than by the order written: an exact
 * path first, then the longest prefix, then a method, then the most header
 * matches, then the most query matches; ties go to the rule written first.
 * (Regular expressions, which Gateway API leaves to implementations, rank
 * after exact paths and before prefixes, longer patterns first.)
 */
import { wholeValueRegex } from './linear-regex.ts';
import type { RouteMatch, RouteRule, ValueMatch } from '../config/types.ts';
import { identityPattern } from '../identity/spiffe.ts';
import type { RequestHead } from '../stack/exchange.ts';
import { matchPath, queryParams } from './match-path.ts';

/** What a route is chosen on. */
export interface RouteRequest {
  readonly head: RequestHead;
  /** The caller's verified identity, when there is one. */
  readonly caller: string | undefined;
}

type Test = (request: RouteRequest, path: string, query: () => Map<string, string>) => boolean;

interface Candidate<T> {
  readonly rank: readonly number[];
  readonly test: Test;
  readonly rule: RouteRule;
  readonly value: T;
  readonly prefix: string;
}

export interface SelectedRoute<T> {
  readonly rule: RouteRule;
  readonly value: T;
  /** The path prefix the match that chose the route matched: its PathPrefix value, else "/" (URLRewrite, RequestRedirect). */
  readonly prefix: string;
}

export class RouteTable<T> {
  private readonly candidates: Candidate<T>[];
  readonly size: number;

  /** `build` makes each rule's value (its handler) once. */
  constructor(rules: readonly RouteRule[], build: (rule: RouteRule) => T) {
    const candidates: Candidate<T>[] = [];
    rules.forEach((rule, ruleIndex) => {
      const value = build(rule);
      // No matches: Gateway API's default, a PathPrefix of "/".
      const matches = rule.matches.length > 0 ? rule.matches : [NO_CONDITIONS];
      matches.forEach((match, matchIndex) =>
        candidates.push({
          rank: [...precedence(match), -ruleIndex, -matchIndex],
          test: compileMatch(match),
          rule,
          value,
          prefix: match.path?.type === 'PathPrefix' ? match.path.value : '/',
        }),
      );
    });
    candidates.sort((a, b) => compareRanks(b.rank, a.rank));
    this.candidates = candidates;
    this.size = rules.length;
  }

  /** The route a request takes, or undefined when none matches (the service's defaults apply). */
  select(request: RouteRequest): SelectedRoute<T> | undefined {
    if (this.candidates.length === 0) return undefined;
    const path = matchPath(request.head.path);
    let parsed: Map<string, string> | undefined;
    const query = (): Map<string, string> => (parsed ??= queryParams(request.head.path));
    for (const c of this.candidates) if (c.test(request, path, query)) return c;
    return undefined;
  }
}

const NO_CONDITIONS: RouteMatch = { path: undefined, method: undefined, headers: [], queryParams: [], callers: [] };

/** Larger sorts first: [path kind, path length, method, headers, query params, callers]. */
function precedence(m: RouteMatch): number[] {
  const kind = m.path === undefined ? 1 : m.path.type === 'Exact' ? 3 : m.path.type === 'RegularExpression' ? 2 : 1;
  const length = m.path === undefined ? 1 : m.path.value.length;
  return [kind, length, m.method === undefined ? 0 : 1, m.headers.length, m.queryParams.length, m.callers.length > 0 ? 1 : 0];
}

function compareRanks(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function compileMatch(m: RouteMatch): Test {
  const tests: Test[] = [];
  if (m.path !== undefined) tests.push(pathTest(m.path.type, m.path.value));
  if (m.method !== undefined) {
    const method = m.method;
    tests.push((r) => r.head.method === method);
  }
  for (const h of m.headers) {
    const matches = valueTest(h);
    tests.push((r) => matches(r.head.field(h.name)));
  }
  for (const q of m.queryParams) {
    const matches = valueTest(q);
    tests.push((_r, _p, query) => matches(query().get(q.name)));
  }
  if (m.callers.length > 0) {
    const patterns = m.callers.map(identityPattern);
    tests.push((r) => r.caller !== undefined && patterns.some((p) => p(r.caller as string)));
  }
  // Most matches hold one condition: test it directly rather than through a loop.
  if (tests.length === 0) return () => true;
  if (tests.length === 1) return tests[0] as Test;
  return (r, path, query) => {
    for (const t of tests) if (!t(r, path, query)) return false;
    return true;
  };
}

function pathTest(type: 'Exact' | 'PathPrefix' | 'RegularExpression', value: string): Test {
  if (type === 'Exact') return (_r, path) => path === value;
  if (type === 'RegularExpression') {
    const regex = wholeValueRegex(value);
    return (_r, path) => regex.test(path);
  }
  // Gateway API prefixes match whole segments: "/foo" matches "/foo" and "/foo/bar", not "/foobar".
  const prefix = value.length > 1 && value.endsWith('/') ? value.slice(0, -1) : value;
  if (prefix === '/') return () => true;
  return (_r, path) => path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 0x2f);
}

/** Exact or whole-value regular expression; an absent value never matches. */
export function valueTest(m: ValueMatch): (value: string | undefined) => boolean {
  if (m.type === 'Exact') return (v) => v === m.value;
  const regex = wholeValueRegex(m.value);
  return (v) => v !== undefined && regex.test(v);
}
