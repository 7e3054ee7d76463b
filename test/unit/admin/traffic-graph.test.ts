import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { DecisionLog } from '../../../src/admin/decision-log.ts';
import { TrafficGraph } from '../../../src/admin/traffic-graph.ts';

describe('dependency map (fake clock)', () => {
  it('counts edges caller → service → endpoint with rates, error rates and latency quantiles', () => {
    let now = 1_000_000;
    const graph = new TrafficGraph(() => now);
    for (let i = 0; i < 100; i++) {
      now += 100;
      graph.exchange('spiffe://prod/ns/web/sa/frontend', 'users', '10.0.0.1:80', i % 10 === 0, i < 90 ? 0.004 : 0.2, 'http');
    }
    const g = graph.graph();
    assert.deepEqual(
      g.nodes.map((n) => [n.id, n.kind]),
      [
        ['caller:spiffe://prod/ns/web/sa/frontend', 'caller'],
        ['service:users', 'service'],
        ['endpoint:users/10.0.0.1:80', 'endpoint'],
      ],
    );
    const edge = g.edges[0];
    assert.ok(edge !== undefined);
    assert.equal(edge.requests, 100);
    assert.equal(edge.errors, 10);
    assert.equal(edge.errorRate, 0.1);
    // 100 requests over ~10 s.
    assert.ok(edge.requestRate > 9 && edge.requestRate < 11, String(edge.requestRate));
    // p50 inside the 2.5–5 ms bucket, p99 inside 100–250 ms.
    assert.ok(edge.latencyP50Ms !== undefined && edge.latencyP50Ms > 2.5 && edge.latencyP50Ms <= 5, String(edge.latencyP50Ms));
    assert.ok(edge.latencyP99Ms !== undefined && edge.latencyP99Ms > 100 && edge.latencyP99Ms <= 250, String(edge.latencyP99Ms));
    assert.deepEqual(edge.protocols, ['http']);
    assert.equal(g.edges.length, 2);
  });

  it('says which edges carried WebSocket tunnels or TCP connections, in JSON and DOT', () => {
    const graph = new TrafficGraph(() => 0);
    graph.exchange('web', 'chat', '10.0.0.2:80', false, 0.002, 'http');
    graph.exchange('web', 'chat', '10.0.0.2:80', false, 0.003, 'websocket');
    graph.exchange('web', 'db', '10.0.0.3:5432', true, 0.001, 'tcp');
    const edges = graph.graph().edges;
    assert.deepEqual(edges.find((e) => e.to === 'service:chat')?.protocols, ['http', 'websocket']);
    const db = edges.find((e) => e.to === 'service:db');
    assert.deepEqual(db?.protocols, ['tcp']);
    assert.equal(db.errorRate, 1);
    const dot = graph.dot();
    assert.match(dot, /"caller:web" -> "service:chat" \[label="websocket: /);
    assert.match(dot, /"caller:web" -> "service:db" \[label="tcp: .*color="red"/);
    // Across workers the protocols are merged too.
    const merged = new TrafficGraph(() => 0);
    merged.absorb(graph.raw());
    assert.deepEqual(merged.graph().edges.find((e) => e.to === 'service:chat')?.protocols, ['http', 'websocket']);
  });

  it('forgets traffic older than its minute', () => {
    let now = 0;
    const graph = new TrafficGraph(() => now);
    graph.exchange('a', 's', undefined, false, 0.001, 'http');
    now = 59_000;
    assert.equal(graph.graph().edges.length, 1);
    now = 70_001;
    assert.deepEqual(graph.graph().edges, []);
  });

  it('merges workers’ edges slot by slot', () => {
    const now = 5_000;
    const w1 = new TrafficGraph(() => now);
    const w2 = new TrafficGraph(() => now);
    w1.exchange('a', 's', 'e:1', false, 0.001, 'http');
    w2.exchange('a', 's', 'e:1', true, 0.001, 'http');
    const merged = new TrafficGraph(() => now);
    merged.absorb(w1.raw());
    merged.absorb(w2.raw());
    const edge = merged.graph().edges.find((e) => e.from === 'caller:a');
    assert.ok(edge !== undefined);
    assert.equal(edge.requests, 2);
    assert.equal(edge.errors, 1);
  });

  it('writes DOT that Graphviz parses, whatever the names contain', () => {
    const graph = new TrafficGraph(() => 0);
    graph.exchange('evil" -> "x"; \n}', 'users', '10.0.0.1:80', false, 0.001, 'http');
    const dot = graph.dot();
    // The real Graphviz parser: a name that broke out of its quotes would change the graph or fail.
    const plain = execFileSync('dot', ['-Tplain'], { input: dot }).toString();
    assert.equal(plain.split('\n').filter((l) => l.startsWith('node ')).length, 3);
    assert.equal(plain.split('\n').filter((l) => l.startsWith('edge ')).length, 2);
  });
});

describe('decision log', () => {
  it('keeps decisions in order, folds repeats within a second, and stays bounded', () => {
    let now = 0;
    const log = new DecisionLog(() => now);
    log.record('users', 'eject', 'latency', '10.0.0.1:80');
    for (let i = 0; i < 50; i++) log.record('users', 'shed', 'queue_full');
    now = 2_000;
    log.record('users', 'shed', 'queue_full');
    assert.deepEqual(
      log.list().map((e) => [e.decision, e.count, e.endpoint]),
      [
        ['eject', 1, '10.0.0.1:80'],
        ['shed', 50, undefined],
        ['shed', 1, undefined],
      ],
    );
    for (let i = 0; i < 500; i++) log.record('s', 'eject', 'r', `e${i}`);
    assert.equal(log.list().length, 200);
    assert.equal(log.list().at(-1)?.endpoint, 'e499');
  });
});
