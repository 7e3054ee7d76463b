/**
 * The live dashboard the admin listener serves at `/`: one HTML document with
 * its CSS and script inline (no build step, no CDN, works offline) that polls
 * the same-origin JSON endpoints every second and draws services, endpoints,
 * the canary, a timeline of feedback decisions and the dependency map.
 *
 * It only reads: no control changes anything, and `/faults` and `/canary`
 * refuse browsers anyway (admin/changes.ts). Everything from the server is
 * put in the page as text nodes or attribute values (never markup), and the
 * Content-Security-Policy allows only this page's own script and style (by
 * hash: the page is the same bytes on every response, so a hash pins exactly
 * them, costs nothing per request and cannot be replayed by injected markup
 * the way a leaked nonce could) and fetches to its own origin. Trusted Types
 * are required with no policy, so no script can write markup through
 * innerHTML and the like.
 */
import { createHash } from 'node:crypto';

/**
 * Drops indentation, blank lines and whole-line comments (the script has no multi-line strings):
 * a tenth of the bytes, and the page stays readable in a browser's tools.
 */
const compact = (text: string): string => text.replace(/^\s+/gm, '').replace(/^(\/\/.*|\/\*\*.*\*\/)\n/gm, '');

const STYLE = compact(`
:root{--bg:#f6f6f4;--fg:#1d1d1f;--mut:#6b6b70;--card:#fff;--line:#e0e0dc;--good:#1a7f37;--warn:#9a6700;--bad:#cf222e;--info:#0969da;--sick:#8250df;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#111214;--fg:#e6e6e6;--mut:#9a9aa0;--card:#1b1c1f;--line:#2c2d31;--good:#3fb950;--warn:#d29922;--bad:#f85149;--info:#58a6ff;--sick:#bc8cff}}
*{box-sizing:border-box}
body{margin:0;font:13px/1.45 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
.top{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:baseline;padding:.6em 1em;background:var(--card);border-bottom:1px solid var(--line);position:sticky;top:0;z-index:1}
h1{font-size:16px;margin:0}h2{font-size:15px;margin:0 .6em 0 0;display:inline}h3{font-size:14px;margin:0 0 .4em}
main,#services{display:grid;gap:1em}main{padding:1em}main.stale{opacity:.55}
section{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.7em 1em;min-width:0}
.two{display:grid;gap:1em;grid-template-columns:minmax(0,2fr) minmax(0,3fr)}@media (max-width:1100px){.two{grid-template-columns:1fr}}
.mut{color:var(--mut)}.kv{margin-right:1.2em;white-space:nowrap}.line{margin-top:.3em}
#status{font-weight:600;color:var(--good)}#status.down{color:var(--bad)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin-top:.5em}
th{font-weight:600;color:var(--mut);font-size:12px}
th,td{text-align:left;padding:.25em .6em;border-top:1px solid var(--line);white-space:nowrap;vertical-align:top}
.num{text-align:right;font-variant-numeric:tabular-nums}td.reason{white-space:normal;min-width:14em}
tr[data-state=ejected]>td:first-child,tr[data-state=unhealthy]>td:first-child{box-shadow:inset 3px 0 var(--bad)}tr[data-state=probation]>td:first-child{box-shadow:inset 3px 0 var(--warn)}
.badge{display:inline-block;padding:0 .55em;border-radius:9px;font-size:12px;font-weight:600;color:#fff;background:var(--mut)}
.s-active,.k-good{background:var(--good)}.s-probation,.k-warn{background:var(--warn)}.s-ejected,.k-bad{background:var(--bad)}.s-unhealthy{background:var(--sick)}.k-info{background:var(--info)}
.chip{font-size:11px;border:1px solid var(--line);border-radius:4px;padding:0 .3em;margin-left:.3em;color:var(--mut)}
.bar{display:inline-block;width:64px;height:8px;background:var(--line);border-radius:4px;vertical-align:middle;margin-right:.4em;overflow:hidden}.bar i{display:block;height:100%;background:var(--info)}
.canary{margin-top:.4em;padding:.3em .6em;border-left:3px solid var(--info)}.canary[data-phase=rolled_back]{border-color:var(--bad)}
ol{list-style:none;margin:0;padding:0;max-height:28em;overflow:auto}li{padding:.25em 0;border-top:1px solid var(--line)}
li time{font-variant-numeric:tabular-nums;color:var(--mut);margin-right:.5em}li .src{font-size:11px;color:var(--mut);margin-left:.4em}
svg{width:100%;height:auto;display:block}svg text{fill:var(--fg);font-size:11px}
.n rect{fill:var(--card);stroke:var(--mut);rx:4px}.n-caller rect{stroke:var(--info)}.n.s-ejected rect,.n.s-unhealthy rect{stroke:var(--bad);stroke-width:2}.n.s-probation rect{stroke:var(--warn);stroke-width:2}
.e{fill:none;stroke:var(--good);opacity:.7}.e-warn{stroke:var(--warn)}.e-bad{stroke:var(--bad)}.e-idle{stroke:var(--mut);stroke-dasharray:3 3}
svg .el{font-size:10px;fill:var(--mut);paint-order:stroke;stroke:var(--card);stroke-width:5px;stroke-linejoin:round}
`);

// Plain JavaScript, run by the browser. No backslashes or dollar-brace pairs: it sits in a template literal.
const SCRIPT = compact(`
'use strict';
(() => {
  const POLL_MS = 1000, RATE_WINDOW_MS = 5000, GRAPH_RETRY_MS = 30000, KEEP = 200, SAME_MS = 5000, FOLD_MS = 10000;
  const SVGNS = 'http://www.w3.org/2000/svg';
  const make = (ns, tag, attrs, kids) => {
    const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const k of Object.keys(attrs || {})) {
      const v = attrs[k];
      if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v));
    }
    // append() turns strings into text nodes: server data never becomes markup.
    for (const c of [kids].flat(2)) if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
    return e;
  };
  const h = (tag, attrs, kids) => make(null, tag, attrs, kids);
  const s = (tag, attrs, kids) => make(SVGNS, tag, attrs, kids);
  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === 'number' && isFinite(v);
  const ms = (v) => (isNum(v) ? (v < 10 ? v.toFixed(1) : String(Math.round(v))) + ' ms' : '–');
  const pct = (v, d) => (isNum(v) ? (v * 100).toFixed(d === undefined ? 1 : d) + ' %' : '–');
  const perSec = (v) => (isNum(v) ? (v < 10 ? v.toFixed(1) : String(Math.round(v))) + '/s' : '–');
  const str = (v) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
  const hhmmss = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
  const layer = (k) => (k === 'caller' || k === 'endpoint' ? k : 'service');
  const labelsOf = (o) => Object.keys(o || {}).map((k) => k + '=' + str(o[k]));

  const rates = new Map();
  let prev, observed = [], limitRuns = new Map(), graphRetryAt = 0, graphMissing = false, busy = false, timer, lastOk = 0;

  /** Requests per second of a counter over the last few polls; a counter that went back starts over. */
  function rate(key, n, now, seen) {
    seen.add(key);
    let hist = rates.get(key);
    if (!hist) rates.set(key, (hist = []));
    if (hist.length && n < hist[hist.length - 1].n) hist.length = 0;
    hist.push({ t: now, n });
    while (hist.length > 2 && now - hist[1].t >= RATE_WINDOW_MS) hist.shift();
    if (hist.length < 2) return undefined;
    const a = hist[0], b = hist[hist.length - 1];
    return b.t > a.t ? (b.n - a.n) / ((b.t - a.t) / 1000) : undefined;
  }
  const totalOf = (stats) => Object.values((stats && stats.total) || {}).reduce((n, v) => n + (isNum(v) ? v : 0), 0);

  /** With several workers, in-flight counts, concurrency limits and retry budgets are theirs: summed here. */
  function workerSums(st) {
    const sums = new Map();
    const states = (st.workers && Array.isArray(st.workers.states) && st.workers.states) || [];
    for (const w of states)
      for (const svc of (w && w.services) || []) {
        let m = sums.get(svc.name);
        if (!m) sums.set(svc.name, (m = { inFlight: 0, ep: new Map(), limit: 0, cInFlight: 0, queued: 0, limited: 0, rb: { requests: 0, retries: 0, allowance: 0 } }));
        m.inFlight += isNum(svc.inFlight) ? svc.inFlight : 0;
        for (const e of svc.endpoints || []) m.ep.set(e.address, (m.ep.get(e.address) || 0) + (isNum(e.inFlight) ? e.inFlight : 0));
        for (const k of Object.keys(m.rb)) m.rb[k] += (svc.retryBudget && svc.retryBudget[k]) || 0;
        if (svc.concurrency) {
          m.limited++;
          m.limit += svc.concurrency.limit || 0;
          m.cInFlight += svc.concurrency.inFlight || 0;
          m.queued += svc.concurrency.queued || 0;
        }
      }
    return states.length ? sums : undefined;
  }

  function derive(st) {
    const now = performance.now(), seen = new Set(), sums = workerSums(st);
    const services = (Array.isArray(st.services) ? st.services : []).map((svc) => {
      const w = sums && sums.get(svc.name);
      const endpoints = (svc.endpoints || []).map((e) => {
        const key = svc.name + '/' + e.address;
        return { e, key, rps: rate(key, totalOf(e.stats), now, seen), inFlight: w ? w.ep.get(e.address) || 0 : e.inFlight };
      });
      const sum = endpoints.reduce((n, x) => n + (isNum(x.rps) ? x.rps : 0), 0);
      for (const x of endpoints) x.share = isNum(x.rps) ? (sum > 0 ? x.rps / sum : 0) : undefined;
      const concurrency = w ? (w.limited ? { limit: w.limit, inFlight: w.cInFlight, queued: w.queued, workers: w.limited } : undefined) : svc.concurrency;
      return { svc, endpoints, rps: sum, inFlight: w ? w.inFlight : svc.inFlight, concurrency, retryBudget: w ? w.rb : svc.retryBudget };
    });
    for (const k of [...rates.keys()]) if (!seen.has(k)) rates.delete(k);
    return services;
  }

  /** Decisions inferred from what changed since the last poll, for when meshd keeps none (or as a check on its list). */
  function observe(st, services, at) {
    const cur = { id: str(st.pid) + ' ' + str(st.startedAt), eps: new Map(), svcs: new Map() };
    for (const d of services) {
      const c = d.svc.canary;
      cur.svcs.set(d.svc.name, { limit: d.concurrency && d.concurrency.limit, canary: c && str(c.phase) + ' ' + str(c.weight), c });
      for (const x of d.endpoints) cur.eps.set(x.key, { svc: d.svc.name, ep: x.e.address, state: x.e.state, reason: x.e.health && x.e.health.lastReason });
    }
    const add = (service, endpoint, decision, reason) => {
      const entry = { at, service, endpoint, decision, reason, count: 1, src: 'observed' };
      observed.push(entry);
      return entry;
    };
    if (prev && prev.id !== cur.id) add('meshd', undefined, 'restart', 'pid ' + str(st.pid) + ', started ' + str(st.startedAt));
    else if (prev) {
      for (const [key, n] of cur.eps) {
        const p = prev.eps.get(key);
        if (!p) {
          if (prev.svcs.has(n.svc)) add(n.svc, n.ep, 'added', 'discovered');
        } else if (p.state !== n.state) {
          const move = p.state + ' → ' + n.state;
          if (n.state === 'ejected') add(n.svc, n.ep, 'eject', n.reason ? n.reason + ' (' + move + ')' : move);
          else if (n.state === 'unhealthy') add(n.svc, n.ep, 'eject', 'health_check (' + move + ')');
          else if (p.state === 'ejected' || p.state === 'unhealthy') add(n.svc, n.ep, 'return', move);
          else add(n.svc, n.ep, n.state, move);
        }
      }
      for (const [key, p] of prev.eps) if (!cur.eps.has(key) && cur.svcs.has(p.svc)) add(p.svc, p.ep, 'removed', 'no longer discovered');
      for (const [name, n] of cur.svcs) {
        const p = prev.svcs.get(name);
        if (!p) continue;
        if (isNum(p.limit) && isNum(n.limit) && p.limit !== n.limit) {
          // An adaptive limit moves every second under load: one entry per run of changes, as meshd folds its own.
          let run = limitRuns.get(name);
          if (!run || at - run.entry.at > FOLD_MS) limitRuns.set(name, (run = { from: p.limit, entry: add(name, undefined, 'limit_change', '') }));
          else run.entry.count++;
          run.entry.at = at;
          run.entry.reason = (n.limit > run.from ? 'increase' : 'decrease') + ' (' + run.from + ' → ' + n.limit + ')';
        }
        if (n.canary && p.canary !== n.canary) {
          const hist = Array.isArray(n.c.history) ? n.c.history : [];
          const last = hist[hist.length - 1];
          const action = last && (!p.c || !Array.isArray(p.c.history) || hist.length !== p.c.history.length || p.c.weight !== n.c.weight) ? last.action : n.c.phase;
          add(name, undefined, 'canary_' + str(action), str(n.c.lastReason) + ' (weight ' + str(p.c && p.c.weight) + ' → ' + str(n.c.weight) + ' %)');
        }
      }
    }
    if (observed.length > KEEP) observed = observed.slice(-KEEP);
    prev = cur;
  }

  function timeline(server) {
    const list = (Array.isArray(server) ? server : [])
      .filter((d) => d && typeof d.decision === 'string' && !isNaN(Date.parse(d.at)))
      .map((d) => ({ at: Date.parse(d.at), service: str(d.service), endpoint: d.endpoint, decision: d.decision, reason: str(d.reason), count: d.count, src: 'meshd' }));
    const same = (a, b) => a.service === b.service && str(a.endpoint) === str(b.endpoint) && a.decision === b.decision && Math.abs(a.at - b.at) <= SAME_MS;
    const mine = observed.filter((o) => !list.some((d) => same(d, o)));
    return list.concat(mine).sort((a, b) => b.at - a.at).slice(0, KEEP);
  }
  const kind = (d) =>
    /^(eject|panic|canary_rollback|restart|removed)$/.test(d) ? 'bad' : /^(eject_skipped|shed|canary_hold|canary_pause)$/.test(d) ? 'warn' : /^(return|active|added|canary_promote|canary_advance)$/.test(d) ? 'good' : 'info';

  function reasonOf(e) {
    const hl = e.health || {};
    const parts = [];
    if (e.state === 'ejected' || e.state === 'unhealthy') {
      parts.push(h('b', null, str(hl.lastReason) || (e.state === 'unhealthy' ? 'health check failing' : 'ejected')));
      const detail = Object.keys(hl.lastDetail || {}).map((k) => k + ' ' + str(hl.lastDetail[k]));
      if (detail.length) parts.push(' (' + detail.join(', ') + ')');
      if (isNum(hl.returnInMs)) parts.push(', back in ' + Math.ceil(hl.returnInMs / 1000) + ' s');
      if (isNum(hl.ejections)) parts.push(', ejection #' + hl.ejections);
    } else if (e.state === 'probation') {
      parts.push('probation' + (isNum(hl.probationLeftMs) ? ', ' + Math.ceil(hl.probationLeftMs / 1000) + ' s left' : ''));
      if (hl.lastReason) parts.push(h('span', { class: 'mut' }, ' · last: ' + str(hl.lastReason)));
    } else if (hl.lastReason) parts.push(h('span', { class: 'mut' }, 'last: ' + str(hl.lastReason)));
    if (e.available === false && e.state !== 'ejected' && e.state !== 'unhealthy') parts.push(h('span', { class: 'chip' }, 'not picked'));
    if (hl.healthCheck === 'failing') parts.push(h('span', { class: 'chip' }, 'health check failing'));
    return parts;
  }

  function policyOf(svc, rb) {
    const t = svc.traffic || {}, out = [];
    const routes = Array.isArray(t.routes) ? t.routes : [];
    out.push(h('span', { class: 'kv' }, ['routes: ', routes.length ? routes.map(str).join(', ') : 'none']));
    const rl = t.rateLimit;
    if (rl) out.push(h('span', { class: 'kv' }, 'rate limit: ' + str(rl.requestsPerSecond) + '/s, burst ' + str(rl.burst) + (rl.per ? ' per ' + str(rl.per) : '')));
    if (isNum(t.access)) out.push(h('span', { class: 'kv' }, 'access rules: ' + t.access));
    if (rb) out.push(h('span', { class: 'kv' }, 'retries: ' + str(rb.retries) + ' of ' + str(rb.requests) + ' requests (budget ' + str(Math.round(rb.allowance * 10) / 10) + ')'));
    return h('div', { class: 'line mut' }, out);
  }

  function canaryOf(c) {
    if (!c) return null;
    const steps = Array.isArray(c.steps) ? c.steps : [];
    const obs = c.observed || {};
    const side = (name, o) => (o ? name + ' ' + pct(o.successRate) + ' ok, ' + ms(o.latencyMs) + ', ' + str(o.requests) + ' req' : null);
    const bits = [
      h('b', null, 'canary '),
      h('span', { class: 'badge k-' + (c.phase === 'rolled_back' ? 'bad' : c.phase === 'promoted' ? 'good' : 'info') }, str(c.phase)),
      ' weight ',
      h('b', null, str(c.weight) + ' %'),
    ];
    if (isNum(c.step)) bits.push(' · step ' + (c.step + 1) + ' of ' + steps.length + ' (' + steps.join(' → ') + ')');
    if (isNum(c.stepAgeSeconds)) bits.push(' · ' + c.stepAgeSeconds + ' s in step');
    if (c.lastReason) bits.push(' · reason ' + str(c.lastReason));
    if (c.decidedBy) bits.push(' · decided by the ' + str(c.decidedBy));
    if (c.canary) bits.push(h('span', { class: 'chip' }, labelsOf(c.canary).join(' ')));
    const seen = [side('canary', obs.canary), side('stable', obs.stable)].filter(Boolean);
    if (seen.length) bits.push(h('div', { class: 'mut' }, 'this step: ' + seen.join(' · ')));
    return h('div', { class: 'canary', 'data-phase': str(c.phase) }, bits);
  }

  function serviceCard(d) {
    const svc = d.svc, c = d.concurrency;
    const head = [
      h('h2', null, str(svc.name)),
      h('span', { class: 'kv mut' }, str(svc.balancer) + (isNum(svc.timeoutMs) ? ' · timeout ' + svc.timeoutMs / 1000 + ' s' : '')),
      h('span', { class: 'kv' }, ['in flight ', h('b', null, str(isNum(d.inFlight) ? d.inFlight : '–'))]),
      h('span', { class: 'kv' }, ['concurrency limit ', h('b', null, c ? str(c.limit) : 'none'), c ? ' (in flight ' + str(c.inFlight) + ', queued ' + str(c.queued) + (c.workers ? ', summed over ' + c.workers + ' workers' : '') + ')' : '']),
      h('span', { class: 'kv' }, ['traffic ', h('b', null, perSec(d.rps))]),
    ];
    const rows = d.endpoints.map((x) => {
      const e = x.e, st = e.stats || {}, state = str(e.state) || 'active';
      const bar = h('span', { class: 'bar' }, h('i'));
      bar.firstChild.style.width = Math.round((x.share || 0) * 100) + '%';
      return h('tr', { 'data-endpoint': e.address, 'data-state': state }, [
        h('td', null, [str(e.address), e.zone ? h('span', { class: 'chip' }, 'zone ' + str(e.zone)) : null, labelsOf(e.labels).map((l) => h('span', { class: 'chip' }, l))]),
        h('td', { 'data-field': 'state' }, h('span', { class: 'badge s-' + state }, state)),
        h('td', { class: 'num', 'data-field': 'share' }, [bar, pct(x.share, 0)]),
        h('td', { class: 'num' }, perSec(x.rps)),
        h('td', { class: 'num' }, ms(st.ewmaLatencyMs)),
        h('td', { class: 'num' }, ms(e.health && e.health.windowLatencyPercentileMs)),
        h('td', { class: 'num' }, pct(st.windowSuccessRate)),
        h('td', { class: 'num' }, str(isNum(x.inFlight) ? x.inFlight : '–')),
        h('td', { class: 'reason', 'data-field': 'reason' }, reasonOf(e)),
      ]);
    });
    const th = (t, title, num) => h('th', { title, class: num ? 'num' : null }, t);
    const table = h('table', null, [
      h('thead', null, h('tr', null, [
        th('endpoint'), th('state'), th('share', 'share of requests over the last ' + RATE_WINDOW_MS / 1000 + ' s', 1), th('rate', '', 1),
        th('EWMA', 'peak EWMA latency', 1), th('window pctl', "the outlier detector's latency percentile over its window", 1),
        th('success', 'success rate over the window', 1), th('in flight', '', 1), th('ejection / reason'),
      ])),
      h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: 9, class: 'mut' }, 'no endpoints'))),
    ]);
    return h('section', { 'data-service': str(svc.name) }, [h('div', null, head), policyOf(svc, d.retryBudget), canaryOf(svc.canary), h('div', { class: 'scroll' }, table)]);
  }

  function timelineView(list, fromMeshd) {
    const items = list.map((d) =>
      h('li', { 'data-decision': d.decision, 'data-service': d.service, 'data-endpoint': d.endpoint }, [
        h('time', { datetime: new Date(d.at).toISOString() }, hhmmss(d.at)),
        h('span', { class: 'badge k-' + kind(d.decision) }, d.decision),
        ' ', h('b', null, d.service), d.endpoint ? ' ' + str(d.endpoint) : '', ': ', d.reason,
        isNum(d.count) && d.count > 1 ? ' ×' + d.count : '',
        h('span', { class: 'src' }, d.src),
      ]));
    return [
      h('h3', null, 'Recent decisions'),
      h('div', { class: 'mut' }, fromMeshd ? "meshd's decision log, plus changes seen between polls" : 'changes seen between polls (this meshd keeps no decision log)'),
      items.length ? h('ol', null, items) : h('p', { class: 'mut' }, 'none yet'),
    ];
  }

  /** Nodes and edges: /debug/graph when meshd has it, else services → endpoints from the state. */
  function graphModel(g, services) {
    if (g && Array.isArray(g.nodes) && Array.isArray(g.edges)) return { nodes: g.nodes, edges: g.edges, note: 'observed traffic over the last ' + str(g.windowSeconds) + ' s (/debug/graph)' };
    const nodes = [], edges = [];
    for (const d of services) {
      const sid = 'service:' + d.svc.name;
      nodes.push({ id: sid, kind: 'service', label: d.svc.name });
      for (const x of d.endpoints) {
        const sr = x.e.stats && x.e.stats.windowSuccessRate;
        nodes.push({ id: 'endpoint:' + x.key, kind: 'endpoint', label: x.e.address });
        edges.push({ from: sid, to: 'endpoint:' + x.key, requestRate: x.rps || 0, errorRate: isNum(sr) ? 1 - sr : 0, ewma: x.e.stats && x.e.stats.ewmaLatencyMs });
      }
    }
    return { nodes, edges, note: 'services → endpoints from /debug/state' + (graphMissing ? ' (this meshd has no /debug/graph)' : '') };
  }

  function graphView(model, services) {
    const states = new Map(), order = new Map();
    services.forEach((d, i) => {
      order.set('service:' + d.svc.name, i);
      for (const x of d.endpoints) states.set(x.key, str(x.e.state));
    });
    const nodes = model.nodes.filter((n) => n && typeof n.id === 'string');
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const edges = model.edges.filter((e) => e && byId.has(e.from) && byId.has(e.to));
    const rank = (n) => {
      if (order.has(n.id)) return order.get(n.id);
      const near = edges.filter((e) => e.from === n.id || e.to === n.id).map((e) => order.get(e.from === n.id ? e.to : e.from)).filter(isNum);
      return near.length ? Math.min.apply(null, near) : 1e9;
    };
    const kinds = ['caller', 'service', 'endpoint']
      .map((k) => nodes.filter((n) => layer(n.kind) === k).sort((a, b) => rank(a) - rank(b) || str(a.label).localeCompare(str(b.label))))
      .filter((c) => c.length);
    const W = 960, BW = 230, BH = 22, ROW = 30;
    const rows = Math.max(1, ...kinds.map((c) => c.length)), H = rows * ROW + 12;
    const at = new Map();
    kinds.forEach((col, ci) => {
      const x = kinds.length === 1 ? (W - BW) / 2 : 6 + (ci * (W - 12 - BW)) / (kinds.length - 1);
      col.forEach((n, i) => at.set(n.id, { x, y: 6 + ((rows - col.length) * ROW) / 2 + i * ROW }));
    });
    const ins = new Map(), outs = new Map(), labels = [];
    for (const e of edges) {
      ins.set(e.to, (ins.get(e.to) || 0) + 1);
      outs.set(e.from, (outs.get(e.from) || 0) + 1);
    }
    const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'dependency map' });
    for (const e of edges) {
      const a = at.get(e.from), b = at.get(e.to);
      const x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x, y2 = b.y + BH / 2, c = (x2 - x1) / 2;
      const r = isNum(e.requestRate) ? e.requestRate : 0, er = isNum(e.errorRate) ? e.errorRate : 0;
      const cls = 'e ' + (r === 0 ? 'e-idle' : er > 0.05 ? 'e-bad' : er > 0.005 ? 'e-warn' : 'e-ok');
      const lat = [isNum(e.latencyP50Ms) ? 'p50 ' + ms(e.latencyP50Ms) : '', isNum(e.latencyP99Ms) ? 'p99 ' + ms(e.latencyP99Ms) : '', isNum(e.ewma) ? 'EWMA ' + ms(e.ewma) : ''].filter(Boolean);
      // Tunnels say what they carry (HTTP is the default).
      const carried = Array.isArray(e.protocols) ? e.protocols.filter((p) => p !== 'http').map(str).join('+') : '';
      const title = str(byId.get(e.from).label) + ' → ' + str(byId.get(e.to).label) + ': ' + (carried ? carried + ', ' : '') + perSec(r) + ', ' + pct(er) + ' errors' + (lat.length ? ', ' + lat.join(', ') : '');
      const d = 'M' + x1 + ' ' + y1 + 'C' + (x1 + c) + ' ' + y1 + ' ' + (x2 - c) + ' ' + y2 + ' ' + x2 + ' ' + y2;
      svg.append(s('path', { class: cls, d, 'stroke-width': (1 + Math.min(7, Math.log2(1 + r))).toFixed(1), 'data-from': e.from, 'data-to': e.to }, s('title', null, title)));
      // Beside the end only this edge reaches, so that the labels of a fan-out or fan-in do not overlap; above every line.
      labels.push(
        s(
          'text',
          ins.get(e.to) === 1
            ? { class: 'el', x: x2 - 4, y: y2 - 4, 'text-anchor': 'end' }
            : outs.get(e.from) === 1
              ? { class: 'el', x: x1 + 4, y: y1 - 4 }
              : { class: 'el', x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 3, 'text-anchor': 'middle' },
          (carried ? carried + ' · ' : '') + perSec(r) + (er > 0 ? ' · ' + pct(er, er < 0.1 ? 1 : 0) + ' err' : ''),
        ),
      );
    }
    svg.append(...labels);
    for (const n of nodes) {
      const p = at.get(n.id);
      if (!p) continue;
      const k = layer(n.kind), label = str(n.label);
      const state = k === 'endpoint' ? states.get(n.id.indexOf('endpoint:') === 0 ? n.id.slice(9) : label) : undefined;
      const short = label.length > 34 ? label.slice(0, 33) + '…' : label;
      svg.append(
        s('g', { class: 'n n-' + k + (state ? ' s-' + state : ''), 'data-node': n.id, 'data-state': state }, [
          s('rect', { x: p.x, y: p.y, width: BW, height: BH }),
          s('text', { x: p.x + 8, y: p.y + 15 }, short + (state && state !== 'active' ? ' (' + state + ')' : '')),
          s('title', null, k + ' ' + label + (state ? ' — ' + state : '')),
        ]),
      );
    }
    return [h('h3', null, 'Dependency map'), h('div', { class: 'mut' }, model.note), nodes.length ? svg : h('p', { class: 'mut' }, 'no traffic yet')];
  }

  function header(st, serverNow) {
    const up = Date.parse(st.startedAt);
    const bits = [h('span', { class: 'kv' }, ['node ', h('b', null, str(st.node && st.node.name) || '–')]), h('span', { class: 'kv' }, 'pid ' + str(st.pid))];
    if (!isNaN(up) && isNum(serverNow)) bits.push(h('span', { class: 'kv' }, 'up ' + Math.max(0, Math.round((serverNow - up) / 1000)) + ' s'));
    if (st.workers) bits.push(h('span', { class: 'kv' }, 'workers ' + str(st.workers.ready) + '/' + str(st.workers.wanted)));
    if (st.draining) bits.push(h('span', { class: 'badge k-warn' }, 'draining'));
    return bits;
  }

  async function getJson(path) {
    const r = await fetch(path, { cache: 'no-store', headers: { accept: 'application/json' } });
    return { r, body: r.ok ? await r.json() : undefined };
  }
  async function getGraph() {
    if (Date.now() < graphRetryAt) return undefined;
    try {
      const { r, body } = await getJson('debug/graph');
      if (r.status === 404) {
        graphMissing = true;
        graphRetryAt = Date.now() + GRAPH_RETRY_MS;
        return undefined;
      }
      graphMissing = false;
      return body;
    } catch {
      return undefined;
    }
  }

  async function poll() {
    if (busy || document.hidden) return;
    busy = true;
    clearTimeout(timer);
    const started = performance.now();
    try {
      const [state, graph] = await Promise.all([getJson('debug/state'), getGraph()]);
      if (!state.r.ok) throw new Error('/debug/state answered ' + state.r.status);
      const st = state.body || {}, serverNow = Date.parse(state.r.headers.get('date') || '');
      const at = isNaN(serverNow) ? Date.now() : serverNow;
      const services = derive(st);
      observe(st, services, at);
      const hasLog = Array.isArray(st.recentDecisions);
      $('meta').replaceChildren(...header(st, serverNow));
      $('services').replaceChildren(...(services.length ? services.map(serviceCard) : [h('section', { class: 'mut' }, 'no services configured')]));
      const scrolled = $('timeline').querySelector('ol'), top = scrolled ? scrolled.scrollTop : 0;
      $('timeline').replaceChildren(...timelineView(timeline(st.recentDecisions), hasLog));
      if (top && $('timeline').querySelector('ol')) $('timeline').querySelector('ol').scrollTop = top;
      $('graph').replaceChildren(...graphView(graphModel(graph, services), services));
      lastOk = Date.now();
      $('status').textContent = 'live · ' + hhmmss(lastOk);
      $('status').className = '';
      document.querySelector('main').className = '';
    } catch (err) {
      $('status').textContent = 'no answer: ' + str(err && err.message) + (lastOk ? ' · last update ' + hhmmss(lastOk) : '') + ' · retrying';
      $('status').className = 'down';
      document.querySelector('main').className = 'stale';
      if (!(err instanceof TypeError && /fetch/i.test(String(err.message)))) console.error('meshd dashboard:', err);
    } finally {
      busy = false;
      timer = setTimeout(poll, Math.max(200, POLL_MS - (performance.now() - started)));
    }
  }
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) void poll();
  });
  void poll();
})();
`);

const BODY_START = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>meshd</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<div class="top"><h1>meshd</h1><span id="meta"></span><span id="status">connecting…</span></div>
<main>
<div id="services"></div>
<div class="two"><section id="timeline"></section><section id="graph"></section></div>
</main>
<noscript>This page needs JavaScript; the same data is at <a href="debug/state">/debug/state</a>.</noscript>
`;

const PAGE = `${BODY_START}<script>${SCRIPT}</script>
</body>
</html>
`;

/** A CSP source expression for exactly this inline text. */
function hashSource(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `script-src ${hashSource(SCRIPT)}`,
  `style-src ${hashSource(STYLE)}`,
  "connect-src 'self'",
  // The blank favicon above, so that the browser asks for no /favicon.ico.
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

const HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
});

/** The dashboard: one complete HTML document, the same bytes on every call. */
export function dashboardPage(): string {
  return PAGE;
}

/** The dashboard with the headers it must be sent with (its CSP names the page's own script and style by hash). */
export function dashboardResponse(): { headers: Record<string, string>; body: string } {
  return { headers: { ...HEADERS }, body: PAGE };
}
