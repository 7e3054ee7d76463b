/**
 * Gateway API for service meshes (GAMMA): HTTPRoutes whose parentRef is a
 * Service become that Service's routes in Kubernetes mesh mode. A route is
 * translated into meshd's own rule shape (which is HTTPRoute's), then goes
 * through the config's schema and rules, so a route reads and behaves the
 * same whether it came from YAML or from the cluster. A backendRef names a
 * Service of the namespace, and a port of it (its default port without one);
 * its ready pods carry the label `service.meshd.io/NAME: "true"` (or
 * `service.meshd.io/NAME.PORTNAME` for another port) in the calling Service's
 * endpoint set, and the backend is that subset. As Gateway API requires, a request that
 * matches no rule is answered 404, and a rule without backends 500.
 *
 * Supported: producer routes (in the Service's namespace); backendRefs to
 * Services of the same namespace; the RequestHeaderModifier,
 * ResponseHeaderModifier, RequestMirror, RequestRedirect and URLRewrite
 * filters; timeouts and retry.
 * A rule using anything else is left out whole (logged, counted), never
 * half-applied.
 */
import { compileSchema } from '../config/validate.ts';
import { normaliseRoutes } from '../config/normalise-traffic.ts';
import type { RawRouteRule } from '../config/raw.ts';
import { ROUTE_RULE_SCHEMA } from '../config/traffic-schema.ts';
import { routeRuleProblems } from '../config/traffic-rules.ts';
import type { MeshBackend, RouteRule } from '../config/types.ts';

/** The label that puts a pod in the subset of one backend Service, on its port `port` (by name; undefined: its default port). */
export function backendLabel(service: string, port?: string): Record<string, string> {
  return { [`service.meshd.io/${service}${port === undefined ? '' : `.${port}`}`]: 'true' };
}

/**
 * Maps a backendRef's port number to the Service port's name: `{ name: undefined }` for the
 * default port (or when the Service's ports are not known), a reason when the Service lacks it.
 */
export type BackendPortName = (service: string, port: number) => { readonly name: string | undefined } | string;

/** Which Service port the routes are for, and how backendRef ports are read. */
export interface RoutesFor {
  readonly service: string;
  readonly namespace: string;
  /** The Service port's number (parentRefs[].port); undefined: not known. */
  readonly servicePort?: number | undefined;
  /** The Service port's name as its runtime calls it; undefined: the default port. */
  readonly portName?: string | undefined;
  /** Undefined: backendRef ports are not read (every backend on its default port). */
  readonly portNameOf?: BackendPortName | undefined;
}

interface BackendRefObject {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
  port?: number;
  weight?: number;
}

interface HttpRouteRuleObject {
  name?: string;
  matches?: unknown[];
  filters?: {
    type?: string;
    requestHeaderModifier?: unknown;
    responseHeaderModifier?: unknown;
    requestMirror?: { backendRef?: BackendRefObject; percent?: number };
    requestRedirect?: unknown;
    urlRewrite?: unknown;
  }[];
  backendRefs?: BackendRefObject[];
  timeouts?: { request?: string; backendRequest?: string };
  retry?: { attempts?: number; codes?: number[]; backoff?: string };
}

export interface HttpRouteObject {
  metadata?: { name?: string; namespace?: string; creationTimestamp?: string };
  spec?: {
    parentRefs?: { group?: string; kind?: string; name?: string; namespace?: string; port?: number }[];
    rules?: HttpRouteRuleObject[];
  };
}

/** One Service's routes from the cluster, the backend Services they name, and what was left out. */
export interface ServiceRoutes {
  readonly rules: readonly RouteRule[];
  readonly backends: readonly MeshBackend[];
  readonly skipped: readonly string[];
}

const validateRule = compileSchema(ROUTE_RULE_SCHEMA);

/**
 * Whether `route` attaches to Service `service` of `namespace` (a producer route) on its port
 * `servicePort`: a parentRef with a port attaches to that port only (undefined: the Service's
 * ports are not known, and such a parentRef attaches as one without a port).
 */
export function attachesTo(route: HttpRouteObject, service: string, namespace: string, servicePort?: number): boolean {
  if ((route.metadata?.namespace ?? namespace) !== namespace) return false;
  return (route.spec?.parentRefs ?? []).some(
    (p) =>
      (p.group ?? '') === '' &&
      p.kind === 'Service' &&
      p.name === service &&
      (p.namespace === undefined || p.namespace === namespace) &&
      (p.port === undefined || servicePort === undefined || p.port === servicePort),
  );
}

/** The routes of one Service port, from the namespace's HTTPRoutes (oldest first, then by name, as Gateway API breaks ties). */
export function serviceRoutes(routes: readonly HttpRouteObject[], target: RoutesFor): ServiceRoutes | undefined {
  const { service, namespace, servicePort } = target;
  const attached = routes
    .filter((r) => attachesTo(r, service, namespace, servicePort))
    .sort((a, b) => {
      const ta = a.metadata?.creationTimestamp ?? '';
      const tb = b.metadata?.creationTimestamp ?? '';
      if (ta !== tb) return ta < tb ? -1 : 1;
      return (a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : 1;
    });
  if (attached.length === 0) return undefined;
  const rules: RouteRule[] = [];
  const backends = new Map<string, MeshBackend>();
  const skipped: string[] = [];
  for (const route of attached) {
    const routeName = route.metadata?.name ?? 'unnamed';
    (route.spec?.rules ?? []).forEach((rule, i) => {
      const label = `${routeName}/${rule.name ?? `rule-${i + 1}`}`;
      const translated = translateRule(rule, target);
      if (typeof translated === 'string') {
        skipped.push(`${label}: ${translated}`);
        return;
      }
      const [normalised] = normaliseRoutes([translated.raw]);
      if (normalised === undefined) return;
      const problems = routeRuleProblems(normalised, translated.raw);
      if (problems.length > 0) {
        skipped.push(`${label}: ${problems.join('; ')}`);
        return;
      }
      for (const b of translated.backends) backends.set(Object.keys(backendLabel(b.service, b.port))[0] ?? '', b);
      // Gateway API: a rule without backends answers 500, unless it redirects (it answers itself).
      const noBackend = translated.raw.backendRefs?.length === 0 && normalised.redirect === undefined;
      rules.push({ ...normalised, name: label, ...(noBackend ? { answer: 'no_backend' as const } : {}) });
    });
  }
  // Gateway API: a request that matches none of the Service's rules is answered 404.
  rules.push({ ...(normaliseRoutes([{}])[0] as RouteRule), name: 'no-match', answer: 'no_route' });
  return { rules, backends: [...backends].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, b]) => b), skipped };
}

/** A rule in meshd's shape and the Services it names, or why it cannot be applied. */
function translateRule(rule: HttpRouteRuleObject, target: RoutesFor): { raw: RawRouteRule; backends: MeshBackend[] } | string {
  const { namespace, portNameOf } = target;
  const backends: MeshBackend[] = [];
  const backendOf = (ref: BackendRefObject | undefined): Record<string, string> | string => {
    if (ref?.name === undefined) return 'a backendRef without a name';
    if ((ref.group ?? '') !== '' || (ref.kind ?? 'Service') !== 'Service')
      return `backendRef kind ${ref.group ?? ''}/${ref.kind ?? ''} is not supported (Services only)`;
    if (ref.namespace !== undefined && ref.namespace !== namespace)
      return `backendRef to namespace ${ref.namespace} (other namespaces need a ReferenceGrant, not supported)`;
    const port = ref.port === undefined || portNameOf === undefined ? { name: undefined } : portNameOf(ref.name, ref.port);
    if (typeof port === 'string') return `backendRef ${ref.name} port ${String(ref.port)}: ${port}`;
    // The Service itself on the port being routed: its own endpoints, not a backend of their own.
    if (ref.name === target.service && port.name === target.portName) return backendLabel(ref.name, port.name);
    backends.push({ service: ref.name, port: port.name });
    return backendLabel(ref.name, port.name);
  };
  const filters: NonNullable<RawRouteRule['filters']> = [];
  for (const f of rule.filters ?? []) {
    // Written as in meshd's YAML; the schema and rules judge them.
    if (f.type === 'RequestHeaderModifier' || f.type === 'ResponseHeaderModifier' || f.type === 'RequestRedirect' || f.type === 'URLRewrite') {
      filters.push(f as NonNullable<RawRouteRule['filters']>[number]);
    } else if (f.type === 'RequestMirror') {
      const subset = backendOf(f.requestMirror?.backendRef);
      if (typeof subset === 'string') return subset;
      filters.push({
        type: 'RequestMirror',
        requestMirror: { backendRef: { subset }, ...(f.requestMirror?.percent === undefined ? {} : { percent: f.requestMirror.percent }) },
      });
    } else return `filter ${f.type ?? '(none)'} is not supported`;
  }
  const backendRefs: NonNullable<RawRouteRule['backendRefs']> = [];
  for (const ref of rule.backendRefs ?? []) {
    const subset = backendOf(ref);
    if (typeof subset === 'string') return subset;
    backendRefs.push({ subset, weight: ref.weight ?? 1 });
  }
  // A rule's other fields are HTTPRoute's own; the schema refuses what meshd does not know.
  const raw: RawRouteRule = {
    ...(rule.matches === undefined ? {} : { matches: rule.matches as NonNullable<RawRouteRule['matches']> }),
    ...(filters.length === 0 ? {} : { filters }),
    backendRefs,
    ...(rule.timeouts === undefined ? {} : { timeouts: rule.timeouts }),
    ...(rule.retry === undefined ? {} : { retry: rule.retry }),
  };
  if (!validateRule(raw)) return (validateRule.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`.trim()).join('; ');
  return { raw, backends };
}
