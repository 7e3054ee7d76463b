/**
 * The dependency map, from observed traffic (HTTP exchanges, WebSocket
 * tunnels, TCP connections): caller → service and service → endpoint edges
 * with request rate, error rate and latency over the last minute (six
 * 10-second slots, so old traffic ages out without a timer).
 * Callers are named by verified identity (peer certificate, or the calling
 * pod in Kubernetes mesh mode), else by address. Bounded: past MAX_EDGES
 * the least recently used edge is forgotten. Rendered as JSON for tools and
 * the dashboard, and as Graphviz DOT.
 */
import type { EdgeRecorder } from '../stack/observer.ts';
import type { HopProtocol } from '../stack/trace.ts';

const SLOT_MS = 10_000;
const SLOTS = 6;
const MAX_EDGES = 2_000;
/** Upper bounds in seconds (as meshd_request_duration_seconds); the last bucket is everything above. */
const BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

interface Slot {
  start: number;
  requests: number;
  errors: number;
  buckets: number[];
}

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly slots: Slot[];
  /** What went over it: HTTP exchanges, WebSocket tunnels, TCP connections. */
  readonly protocols: Set<HopProtocol>;
}

/** An edge as a worker hands it to the supervisor, which merges every worker's into one map. */
export interface RawEdge {
  readonly from: string;
  readonly fromKind: GraphNode['kind'];
  readonly to: string;
  readonly toKind: GraphNode['kind'];
  readonly slots: readonly Slot[];
  readonly protocols: readonly HopProtocol[];
}

export interface GraphNode {
  id: string;
  kind: 'caller' | 'service' | 'endpoint';
  label: string;
}

export interface GraphEdge {
  from: string;
  to: string;
  requests: number;
  errors: number;
  requestRate: number;
  errorRate: number;
  protocols: HopProtocol[];
  latencyP50Ms?: number;
  latencyP99Ms?: number;
}

export interface Graph {
  windowSeconds: number;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export class TrafficGraph implements EdgeRecorder {
  private readonly edges = new Map<string, Edge>();
  private readonly kinds = new Map<string, GraphNode['kind']>();
  private readonly now: () => number;

  /** `now`: milliseconds on any clock (only differences matter). */
  constructor(now: () => number) {
    this.now = now;
  }

  exchange(caller: string, service: string, endpoint: string | undefined, failed: boolean, seconds: number, protocol: HopProtocol): void {
    this.add(`caller:${caller}`, 'caller', `service:${service}`, 'service', failed, seconds, protocol);
    if (endpoint !== undefined) this.add(`service:${service}`, 'service', `endpoint:${service}/${endpoint}`, 'endpoint', failed, seconds, protocol);
  }

  /** Every edge with its slots (for the supervisor of several workers). */
  raw(): RawEdge[] {
    return [...this.edges.values()].map((e) => ({
      from: e.from,
      fromKind: this.kinds.get(e.from) ?? 'service',
      to: e.to,
      toKind: this.kinds.get(e.to) ?? 'service',
      slots: e.slots.map((s) => ({ ...s, buckets: [...s.buckets] })),
      protocols: [...e.protocols],
    }));
  }

  /** Adds other processes' edges (slot by slot) to this map. */
  absorb(edges: readonly RawEdge[]): void {
    for (const raw of edges) {
      const key = `${raw.from}\u0000${raw.to}`;
      let edge = this.edges.get(key);
      if (edge === undefined) {
        edge = { from: raw.from, to: raw.to, slots: [], protocols: new Set() };
        this.edges.set(key, edge);
        this.kinds.set(raw.from, raw.fromKind);
        this.kinds.set(raw.to, raw.toKind);
      }
      for (const protocol of raw.protocols) edge.protocols.add(protocol);
      for (const slot of raw.slots) {
        const mine = edge.slots.find((s) => s.start === slot.start);
        if (mine === undefined) edge.slots.push({ ...slot, buckets: [...slot.buckets] });
        else {
          mine.requests += slot.requests;
          mine.errors += slot.errors;
          slot.buckets.forEach((n, i) => (mine.buckets[i] = (mine.buckets[i] ?? 0) + n));
        }
      }
      edge.slots.sort((a, b) => a.start - b.start);
    }
  }

  graph(): Graph {
    const now = this.now();
    const edges: GraphEdge[] = [];
    const used = new Set<string>();
    for (const edge of this.edges.values()) {
      const live = edge.slots.filter((s) => now - s.start < SLOT_MS * SLOTS);
      const requests = live.reduce((n, s) => n + s.requests, 0);
      if (requests === 0) continue;
      const errors = live.reduce((n, s) => n + s.errors, 0);
      const oldest = Math.min(...live.map((s) => s.start));
      const spanSeconds = Math.max(1, (now - oldest) / 1000);
      const buckets = BOUNDS.map((_, i) => live.reduce((n, s) => n + (s.buckets[i] ?? 0), 0));
      buckets.push(live.reduce((n, s) => n + (s.buckets[BOUNDS.length] ?? 0), 0));
      edges.push({
        from: edge.from,
        to: edge.to,
        requests,
        errors,
        requestRate: round(requests / spanSeconds),
        errorRate: round(errors / requests),
        protocols: [...edge.protocols].sort(),
        ...optional('latencyP50Ms', quantileMs(buckets, requests, 0.5)),
        ...optional('latencyP99Ms', quantileMs(buckets, requests, 0.99)),
      });
      used.add(edge.from).add(edge.to);
    }
    const nodes = [...used].map((id) => ({ id, kind: this.kinds.get(id) ?? 'service', label: id.slice(id.indexOf(':') + 1) }));
    return { windowSeconds: (SLOT_MS * SLOTS) / 1000, nodes, edges };
  }

  /** Graphviz DOT: callers, services and endpoints left to right, edges labelled with rate, errors and p99. */
  dot(): string {
    const g = this.graph();
    const shape = { caller: 'ellipse', service: 'box', endpoint: 'component' } as const;
    const lines = ['digraph meshd {', '  rankdir=LR;', '  node [fontname="sans-serif"];'];
    for (const n of g.nodes) lines.push(`  ${quote(n.id)} [label=${quote(n.label)}, shape=${shape[n.kind]}];`);
    for (const e of g.edges) {
      // HTTP is the default; tunnels say what they carry.
      const carried = e.protocols.filter((p) => p !== 'http');
      const label = `${carried.length === 0 ? '' : `${carried.join(', ')}: `}${e.requestRate} rps, ${round(e.errorRate * 100)}% errors${e.latencyP99Ms === undefined ? '' : `, p99 ${e.latencyP99Ms} ms`}`;
      lines.push(`  ${quote(e.from)} -> ${quote(e.to)} [label=${quote(label)}${e.errorRate > 0.05 ? ', color="red"' : ''}];`);
    }
    lines.push('}');
    return `${lines.join('\n')}\n`;
  }

  private add(from: string, fromKind: GraphNode['kind'], to: string, toKind: GraphNode['kind'], error: boolean, seconds: number, protocol: HopProtocol): void {
    const key = `${from}\u0000${to}`;
    let edge = this.edges.get(key);
    if (edge === undefined) {
      if (this.edges.size >= MAX_EDGES) {
        const oldest = this.edges.keys().next().value;
        if (oldest !== undefined) this.edges.delete(oldest);
      }
      edge = { from, to, slots: [], protocols: new Set() };
      this.kinds.set(from, fromKind);
      this.kinds.set(to, toKind);
    } else this.edges.delete(key);
    // Re-inserted: the map's order is least recently used first.
    this.edges.set(key, edge);
    edge.protocols.add(protocol);
    const now = this.now();
    const start = now - (now % SLOT_MS);
    let slot = edge.slots[edge.slots.length - 1];
    if (slot?.start !== start) {
      slot = { start, requests: 0, errors: 0, buckets: new Array<number>(BOUNDS.length + 1).fill(0) };
      edge.slots.push(slot);
      if (edge.slots.length > SLOTS) edge.slots.shift();
    }
    slot.requests++;
    if (error) slot.errors++;
    let i = 0;
    while (i < BOUNDS.length && seconds > (BOUNDS[i] as number)) i++;
    slot.buckets[i] = (slot.buckets[i] ?? 0) + 1;
  }
}

/** The q-quantile in ms, interpolated within its bucket as histogram_quantile does. */
function quantileMs(buckets: readonly number[], total: number, q: number): number | undefined {
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const count = buckets[i] ?? 0;
    if (seen + count >= rank && count > 0) {
      const lower = i === 0 ? 0 : (BOUNDS[i - 1] as number);
      const upper = BOUNDS[i] ?? lower;
      return round((lower + (upper - lower) * ((rank - seen) / count)) * 1000);
    }
    seen += count;
  }
  return undefined;
}

function optional<K extends string>(key: K, value: number | undefined): Partial<Record<K, number>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, number>);
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/** A DOT ID: double-quoted, with quotes and backslashes escaped and no line breaks. */
function quote(text: string): string {
  return `"${text.replace(/[\\"]/g, '\\$&').replace(/[\r\n]/g, ' ')}"`;
}
