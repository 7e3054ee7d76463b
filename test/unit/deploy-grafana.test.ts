/**
 * The shipped Grafana dashboard (deploy/grafana/meshd.json) is checked by tools, not by eye:
 * promtool parses every query, every metric and label a query names is one meshd exports, tsc
 * checks the JSON against Grafana's own dashboard and panel types, and the layout is sound.
 * Each check is also run on a dashboard broken on purpose, so none of them can pass vacuously.
 *
 * Schema: @grafana/schema, Grafana's own TypeScript model of the dashboard and of each panel
 * plugin's options (no JSON Schema of the current model is on npm), checked by tsc against the
 * JSON written out as an object literal that `satisfies` those types, so that unknown fields are
 * errors as well as wrong types.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { Metrics } from '../../src/admin/metrics.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARD_FILE = join(REPO, 'deploy/grafana/meshd.json');

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function objects(v: unknown): JsonObject[] {
  return Array.isArray(v) ? v.filter(isObject) : [];
}

function loadDashboard(): JsonObject {
  const d = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as unknown;
  assert.ok(isObject(d), 'the dashboard is a JSON object');
  return d;
}

/** Every panel, rows and the panels inside rows included. */
function allPanels(d: JsonObject): JsonObject[] {
  return objects(d.panels).flatMap((p) => [p, ...objects(p.panels)]);
}

function panelName(p: JsonObject): string {
  return `panel ${String(p.id)} '${String(p.title)}'`;
}

/** A PromQL expression of the dashboard and where it is. */
interface Query {
  where: string;
  expr: string;
  /** A panel's query: it must filter on the template variables and use $__rate_interval. */
  panel: boolean;
  /** Labels the query's result must have: legend {{label}} references, a variable's label. */
  usesLabels: string[];
}

const LABEL_VALUES = /^\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*$/s;

function queries(d: JsonObject): Query[] {
  const found: Query[] = [];
  for (const p of allPanels(d)) {
    for (const t of objects(p.targets)) {
      const legend = typeof t.legendFormat === 'string' ? [...t.legendFormat.matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!) : [];
      found.push({ where: `${panelName(p)} target ${String(t.refId)}`, expr: typeof t.expr === 'string' ? t.expr : '', panel: true, usesLabels: legend });
    }
  }
  const templating = isObject(d.templating) ? d.templating : {};
  for (const v of objects(templating.list)) {
    if (v.type !== 'query') continue;
    const q = isObject(v.query) ? v.query.query : v.query;
    const m = typeof q === 'string' ? LABEL_VALUES.exec(q) : null;
    // A variable whose query is not label_values(selector, label) is reported by layoutProblems.
    if (m !== null) found.push({ where: `variable ${String(v.name)}`, expr: m[1]!, panel: false, usesLabels: [m[2]!] });
  }
  return found;
}

/** Grafana's variables replaced by values PromQL accepts: intervals by a duration, the rest by a regex matching anything. */
function standIn(expr: string): string {
  return expr
    .replace(/\$(?:__rate_interval|__interval|__range)(?!\w)|\$\{(?:__rate_interval|__interval|__range)\}/g, '1m')
    .replace(/\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\]/g, '.*');
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: `${stdout}${stderr}${err?.message ?? ''}` }),
    ),
  );
}

/** promtool's verdict on every query, each written as a recording rule in a group named after its panel. */
async function promtoolProblems(qs: Query[]): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-grafana-'));
  try {
    const file = join(dir, 'dashboard-queries.rules.yaml');
    const groups = qs.map((q, i) => ({ name: q.where, rules: [{ record: `meshd_dashboard_query_${i}`, expr: standIn(q.expr) }] }));
    writeFileSync(file, JSON.stringify({ groups }, null, 2)); // JSON is YAML
    const r = await run('promtool', ['check', 'rules', file]);
    if (r.code === 0 && new RegExp(`SUCCESS: ${qs.length} rules found`).test(r.out)) return [];
    return [`promtool check rules failed (exit ${r.code}):\n${r.out}`];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The metrics meshd exports, each with the label names its samples carry, rendered by the real Metrics after one sample of each kind. */
async function exportedMetrics(): Promise<Map<string, Set<string>>> {
  const m = new Metrics();
  const service = m.forService('users');
  service.started();
  service.finishedWithoutEndpoint(503, 0.001);
  service.reset('client');
  service.retried('503');
  service.budgetExhausted();
  service.tcpConnection('10.0.0.1:5432', 'connected');
  m.forEndpoint('users', '10.0.0.1:8080').finished(200, 0.01);
  m.decision('users', 'eject', 'consecutive_failures');
  m.concurrencyLimit('users', 100);
  m.configReloaded(true);
  m.discoveryUpdate('users', 'file', 'error');
  m.setDiscoveryStalenessSource(() => [{ service: 'users', seconds: 3 }]);
  m.connectionRefused('outbound');
  m.clientError('outbound', 'bad_request');
  m.setEndpointCountSource(() => [{ service: 'users', state: 'healthy', count: 2 }]);
  m.setAttemptCountSource(() => [{ service: 'users', endpoint: '10.0.0.1:8080', outcome: 'http_5xx', count: 3 }]);
  m.setCertificateSource(() => ({ identity: 'spiffe://example.org/ns/default/sa/users', notAfter: new Date(Date.now() + 86_400_000) }));
  m.handshakeError('inbound', 'untrusted_certificate');
  m.handshake('inbound', true);
  m.rateLimited('users', 'api');
  m.faultInjected('users', 'chaos', 'abort');
  m.mirrored('users', 'completed');
  m.routeCounts('users', 'api').finished(200);
  m.canaryWeight('users', 5, 'progressing');
  m.canaryDecision('users', 'advance', 'healthy');
  m.authorization('users', true);
  m.tlsRotation(true);
  const { body } = await m.render();

  const metrics = new Map<string, Set<string>>();
  const add = (name: string): Set<string> => metrics.get(name) ?? metrics.set(name, new Set()).get(name)!;
  for (const line of body.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)$/.exec(line);
    if (type !== null) {
      const [, name, kind] = type;
      if (kind === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) add(`${name!}${suffix}`);
      else if (kind === 'summary') for (const suffix of ['', '_sum', '_count']) add(`${name!}${suffix}`);
      else add(name!);
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+/.exec(line);
    if (sample === null) continue;
    const labels = add(sample[1]!);
    for (const l of (sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"/g)) labels.add(l[1]!);
  }
  return metrics;
}

interface Selector {
  metric: string;
  matchers: { label: string; op: string; value: string }[];
}

interface ParsedQuery {
  selectors: Selector[];
  ranges: string[];
  groupingLabels: string[];
  problems: string[];
}

const TOKEN =
  /\s+|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|\[[^\]]*\]|[a-zA-Z_:][\w:]*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*|=~|!~|!=|==|<=|>=|[{}(),=<>+\-*/%^@]|\S+/gy;
const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'atan2']);
/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = new Set(['instance', 'job']);

/**
 * The metric selectors, ranges and grouping labels of a PromQL expression (promtool checks the
 * syntax; this reads names only). A bare metric name is a selector without matchers.
 */
function readQuery(expr: string): ParsedQuery {
  const tokens = [...expr.matchAll(TOKEN)].map((m) => m[0]).filter((t) => t.trim() !== '');
  const parsed: ParsedQuery = { selectors: [], ranges: [], groupingLabels: [], problems: [] };
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i]!;
    const next = tokens[i + 1];
    if (tok.startsWith('[')) parsed.ranges.push(tok.slice(1, -1));
    else if (tok === '{') parsed.problems.push('a selector without a metric name');
    else if (tok.startsWith('$')) parsed.problems.push(`${tok} outside a label matcher or range`);
    else if (/^[a-zA-Z_:]/.test(tok)) {
      const word = tok.toLowerCase();
      if (GROUPING.has(word)) {
        if (next !== '(') continue;
        for (i += 2; i < tokens.length && tokens[i] !== ')'; i++) if (tokens[i] !== ',') parsed.groupingLabels.push(tokens[i]!);
      } else if (next === '{') {
        const selector: Selector = { metric: tok, matchers: [] };
        for (i += 2; i < tokens.length && tokens[i] !== '}'; i++) {
          const [label, op, value] = [tokens[i]!, tokens[i + 1] ?? '', tokens[i + 2] ?? ''];
          if (!/^[a-zA-Z_]\w*$/.test(label) || !['=', '!=', '=~', '!~'].includes(op) || !/^["'`]/.test(value)) {
            parsed.problems.push(`cannot read the label matchers of ${tok}`);
            break;
          }
          selector.matchers.push({ label, op, value: value.slice(1, -1) });
          i += 2;
          if (tokens[i + 1] === ',') i++;
        }
        parsed.selectors.push(selector);
      } else if (next !== '(' && !AGGREGATIONS.has(word) && !KEYWORDS.has(word)) {
        parsed.selectors.push({ metric: tok, matchers: [] });
      }
    }
  }
  return parsed;
}

/** Metric names meshd does not export, labels its metrics do not carry, selectors that ignore the template variables. */
function metricProblems(qs: Query[], exported: Map<string, Set<string>>): string[] {
  const problems: string[] = [];
  for (const q of qs) {
    const { selectors, ranges, groupingLabels, problems: unread } = readQuery(q.expr);
    const say = (what: string): number => problems.push(`${q.where}: ${what}`);
    unread.forEach(say);
    if (selectors.length === 0) say('names no metric');
    const available = new Set(TARGET_LABELS);
    for (const { metric, matchers } of selectors) {
      const labels = exported.get(metric);
      if (labels === undefined) {
        say(`${metric} is not a metric meshd exports`);
        continue;
      }
      labels.forEach((l) => available.add(l));
      for (const { label } of matchers) {
        if (!labels.has(label) && !TARGET_LABELS.has(label)) say(`${metric} has no label ${label} (it has: ${[...labels].join(', ') || 'none recorded'})`);
      }
      if (!q.panel) continue;
      const filters = (variable: string): boolean =>
        matchers.some((m) => m.label === variable && m.op === '=~' && (m.value === `$${variable}` || m.value === `\${${variable}}`));
      if (!filters('instance')) say(`${metric} lacks instance=~"$instance"`);
      if (labels.has('service') && !filters('service')) say(`${metric} lacks service=~"$service"`);
    }
    if (q.panel) for (const r of ranges) if (r !== '$__rate_interval') say(`range [${r}] is not [$__rate_interval]`);
    for (const l of new Set([...groupingLabels, ...q.usesLabels])) if (!available.has(l)) say(`label ${l} is on none of its metrics`);
  }
  return problems;
}

const DATASOURCE_VARIABLE = /^\$(\{datasource\}|datasource)$/;
const GRID_WIDTH = 24;

function isDatasourceVariable(ds: unknown): boolean {
  return isObject(ds) && typeof ds.uid === 'string' && DATASOURCE_VARIABLE.test(ds.uid);
}

interface Box {
  name: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

function overlaps(boxes: Box[]): string[] {
  const problems: string[] = [];
  boxes.forEach((a, i) =>
    boxes.slice(i + 1).forEach((b) => {
      if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) problems.push(`${a.name} overlaps ${b.name}`);
    }),
  );
  return problems;
}

/** Titles, units, descriptions, data sources, grid positions, ids and the template variables. */
function layoutProblems(d: JsonObject): string[] {
  const problems: string[] = [];
  const ids = new Map<unknown, string>();
  const boxesOf = (panels: JsonObject[]): Box[] =>
    panels.flatMap((p) => {
      const name = panelName(p);
      if (typeof p.title !== 'string' || p.title.trim() === '') problems.push(`${name}: no title`);
      if (!Number.isInteger(p.id)) problems.push(`${name}: id is not an integer`);
      else if (ids.has(p.id)) problems.push(`${name}: id also used by ${ids.get(p.id)!}`);
      else ids.set(p.id, name);
      if (!isDatasourceVariable(p.datasource)) problems.push(`${name}: datasource does not reference \${datasource}`);
      if (p.type !== 'row') {
        const defaults = isObject(p.fieldConfig) && isObject(p.fieldConfig.defaults) ? p.fieldConfig.defaults : {};
        if (typeof defaults.unit !== 'string' || defaults.unit === '') problems.push(`${name}: no unit`);
        if (typeof p.description !== 'string' || p.description.trim() === '') problems.push(`${name}: no description`);
        const targets = objects(p.targets);
        if (targets.length === 0) problems.push(`${name}: no queries`);
        const refIds = targets.map((t) => t.refId);
        if (new Set(refIds).size !== refIds.length) problems.push(`${name}: repeated refId`);
        for (const t of targets) {
          if (typeof t.expr !== 'string' || t.expr.trim() === '') problems.push(`${name} target ${String(t.refId)}: no expr`);
          if (t.datasource !== undefined && !isDatasourceVariable(t.datasource))
            problems.push(`${name} target ${String(t.refId)}: datasource does not reference \${datasource}`);
        }
      }
      const g = p.gridPos;
      if (!isObject(g) || !['x', 'y', 'w', 'h'].every((k) => Number.isInteger(g[k]))) {
        problems.push(`${name}: gridPos is not {x, y, w, h} in whole grid units`);
        return [];
      }
      const box = { name, x: g.x as number, y: g.y as number, w: g.w as number, h: g.h as number };
      if (box.x < 0 || box.y < 0 || box.w < 1 || box.h < 1 || box.x + box.w > GRID_WIDTH)
        problems.push(`${name}: gridPos lies outside the ${GRID_WIDTH}-column grid`);
      return [box];
    });
  const top = objects(d.panels);
  problems.push(...overlaps(boxesOf(top)));
  // A collapsed row keeps its panels inside it, laid out as if it were open.
  for (const row of top) if (row.type === 'row') problems.push(...overlaps(boxesOf(objects(row.panels))));

  const variables = objects(isObject(d.templating) ? d.templating.list : undefined);
  const variable = (name: string): JsonObject | undefined => variables.find((v) => v.name === name);
  const ds = variable('datasource');
  if (ds?.type !== 'datasource' || ds.query !== 'prometheus') problems.push('templating: no datasource variable of type datasource with query prometheus');
  for (const name of ['instance', 'service']) {
    const v = variable(name);
    const q = isObject(v?.query) ? v.query.query : v?.query;
    if (v?.type !== 'query' || typeof q !== 'string' || !LABEL_VALUES.test(q)) problems.push(`templating: no ${name} variable from label_values(…, label)`);
    else if (!isDatasourceVariable(v.datasource)) problems.push(`templating: variable ${name}'s datasource does not reference \${datasource}`);
  }
  if (typeof d.schemaVersion !== 'number' || d.schemaVersion < 39) problems.push('schemaVersion is not that of a recent Grafana (39 or later)');
  return problems;
}

/** Panel plugins the schema check knows: the @grafana/schema module of each one's options and custom field config. */
const PANEL_PLUGINS: Record<string, { module: string; customFieldConfig: boolean }> = {
  timeseries: { module: '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen', customFieldConfig: true },
  stat: { module: '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen', customFieldConfig: false },
};

const CHECK_FILE = join(REPO, 'test/unit/deploy-grafana.dashboard-check.ts'); // virtual: never written to disk
const COMPILER_OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  types: [],
};
const parsedFiles = new Map<string, ts.SourceFile | undefined>();

/** TypeScript source in which the dashboard, and each panel's options and field config, `satisfies` its @grafana/schema type; spans name the panel at each offset. */
function checkSource(d: JsonObject): { text: string; spans: { start: number; end: number; name: string }[]; problems: string[] } {
  const problems: string[] = [];
  const spans: { start: number; end: number; name: string }[] = [];
  let text = [
    "import type { Dashboard, FieldConfigSource } from '@grafana/schema';",
    ...Object.entries(PANEL_PLUGINS).map(([type, { module }]) => `import type * as ${type} from '${module}';`),
    '/** How JSON spells a type: a string enum is written as its values. */',
    'type Json<T> = T extends string ? `${T}` : T extends readonly (infer E)[] ? Json<E>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;',
    'export const dashboard = {',
  ].join('\n');
  const append = (s: string, name?: string): void => {
    if (name !== undefined) spans.push({ start: text.length, end: text.length + s.length, name });
    text += s;
  };
  // Written out a field a line, so that the line of a diagnostic shows the field.
  const json = (v: unknown, indent: string): string => (v === undefined ? 'undefined' : JSON.stringify(v, null, 2)).replaceAll('\n', `\n${indent}`);
  for (const [key, value] of Object.entries(d)) {
    append(`\n  ${JSON.stringify(key)}: `);
    if (key === 'panels' && Array.isArray(value)) {
      append('[');
      value.forEach((p: unknown) => {
        append('\n    ');
        append(json(p, '    '), isObject(p) ? panelName(p) : 'a panel that is no object');
        append(',');
      });
      append('\n  ],');
    } else append(`${json(value, '  ')},`);
  }
  append('\n} satisfies Json<Dashboard>;\n');
  allPanels(d).forEach((p, i) => {
    if (p.type === 'row') return;
    const type = typeof p.type === 'string' ? p.type : '';
    const plugin = PANEL_PLUGINS[type];
    if (plugin === undefined) {
      problems.push(`${panelName(p)}: panel type ${JSON.stringify(p.type)} is not one the schema check knows (${Object.keys(PANEL_PLUGINS).join(', ')})`);
      return;
    }
    append(`export const options${i} = `);
    append(`${json(p.options, '')} satisfies Json<${type}.Options>;\n`, `${panelName(p)} options`);
    append(`export const fieldConfig${i} = `);
    const custom = plugin.customFieldConfig ? `${type}.FieldConfig` : 'Record<string, unknown>';
    append(`${json(p.fieldConfig, '')} satisfies Json<FieldConfigSource<${custom}>>;\n`, `${panelName(p)} fieldConfig`);
  });
  return { text, spans, problems };
}

/** tsc's verdict on the dashboard against @grafana/schema. */
function schemaProblems(d: JsonObject): string[] {
  const { text, spans, problems } = checkSource(d);
  const host = ts.createCompilerHost(COMPILER_OPTIONS);
  const [getSourceFile, fileExists, readFile] = [host.getSourceFile.bind(host), host.fileExists.bind(host), host.readFile.bind(host)];
  host.fileExists = (f) => f === CHECK_FILE || fileExists(f);
  host.readFile = (f) => (f === CHECK_FILE ? text : readFile(f));
  host.getSourceFile = (f, languageVersion) => {
    if (f === CHECK_FILE) return ts.createSourceFile(f, text, languageVersion, true);
    if (!parsedFiles.has(f)) parsedFiles.set(f, getSourceFile(f, languageVersion));
    return parsedFiles.get(f);
  };
  const program = ts.createProgram([CHECK_FILE], COMPILER_OPTIONS, host);
  const file = program.getSourceFile(CHECK_FILE)!;
  const diagnostics = [
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...program.getSyntacticDiagnostics(file),
    ...program.getSemanticDiagnostics(file),
  ];
  for (const diagnostic of diagnostics) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n    ');
    const at = diagnostic.start ?? -1;
    const span = spans.filter((s) => s.start <= at && at < s.end).sort((a, b) => a.end - a.start - (b.end - b.start))[0];
    const line =
      diagnostic.start === undefined
        ? ''
        : file.text
            .slice(file.text.lastIndexOf('\n', at - 1) + 1, file.text.indexOf('\n', at))
            .trim()
            .slice(0, 160);
    problems.push(`${span?.name ?? 'dashboard'}: ${message}${line === '' ? '' : `\n    at: ${line}`}`);
  }
  return problems;
}

const problemList = (problems: string[]): string => `\n${problems.join('\n')}`;

describe('Grafana dashboard', () => {
  const dashboard = loadDashboard();
  let exported: Map<string, Set<string>>;
  before(async () => {
    exported = await exportedMetrics();
  });

  it('has titled, described panels with units, the ${datasource} variable, sound grid positions and unique ids', () => {
    const problems = layoutProblems(dashboard);
    assert.deepEqual(problems, [], problemList(problems));
  });

  it('has queries that promtool parses', async () => {
    const qs = queries(dashboard);
    assert.ok(qs.length > 20, `only ${qs.length} queries found`);
    const problems = await promtoolProblems(qs);
    assert.deepEqual(problems, [], problemList(problems));
  });

  it('names only metrics and labels meshd exports, filtered by $instance and $service, over $__rate_interval', () => {
    const problems = metricProblems(queries(dashboard), exported);
    assert.deepEqual(problems, [], problemList(problems));
  });

  it('matches the dashboard and panel types of @grafana/schema (tsc)', () => {
    const problems = schemaProblems(dashboard);
    assert.deepEqual(problems, [], problemList(problems));
  });

  describe('the checks catch a dashboard broken on purpose', () => {
    /** A copy of the dashboard with its second panel (the first after the Traffic row) changed. */
    const broken = (change: (panel: JsonObject) => void): JsonObject => {
      const copy = structuredClone(dashboard);
      change(objects(copy.panels)[1]!);
      return copy;
    };
    const firstTarget = (p: JsonObject): JsonObject => objects(p.targets)[0]!;

    it('promtool: an unclosed parenthesis', async () => {
      const d = broken((p) => (firstTarget(p).expr = `sum(${String(firstTarget(p).expr)}`));
      const problems = await promtoolProblems(queries(d));
      assert.match(problems.join('\n'), /panel 2 .* target A.*parse error/);
    });

    it('metrics: a misspelt metric name and label', () => {
      const d = broken(
        (p) => (firstTarget(p).expr = String(firstTarget(p).expr).replace('meshd_requests_total', 'meshd_request_total').replace('(service)', '(servce)')),
      );
      const problems = metricProblems(queries(d), exported).join('\n');
      assert.match(problems, /panel 2 .*: meshd_request_total is not a metric meshd exports/);
      assert.match(problems, /panel 2 .*: label servce is on none of its metrics/);
    });

    it('metrics: a selector without $instance and a fixed range', () => {
      const d = broken((p) => (firstTarget(p).expr = 'sum by (service) (rate(meshd_requests_total{service=~"$service"}[5m]))'));
      const problems = metricProblems(queries(d), exported).join('\n');
      assert.match(problems, /lacks instance=~"\$instance"/);
      assert.match(problems, /range \[5m\] is not \[\$__rate_interval\]/);
    });

    it('schema: a gridPos that is a string, an unknown panel field and a wrong option value', () => {
      const d = structuredClone(dashboard);
      const [, second, third, fourth] = objects(d.panels);
      second!.gridPos = 'x';
      third!.colour = 'red';
      const legend = isObject(fourth!.options) ? fourth!.options.legend : undefined;
      if (isObject(legend)) legend.displayMode = 'tabel';
      const problems = schemaProblems(d).join('\n');
      assert.match(problems, /panel 2 [^\n]*: Type 'string' is not assignable to type '\{ h: number;[^\n]*\n\s+at: "gridPos": "x"/);
      assert.match(problems, /panel 3 [^\n]*: Object literal may only specify known properties, and '"colour"' does not exist/);
      assert.match(problems, /panel 4 [^\n]* options: Type '"tabel"' is not assignable/);
      assert.match(layoutProblems(d).join('\n'), /panel 2 .*: gridPos is not/);
    });

    it('layout: overlapping panels, a repeated id, a missing unit and a fixed data source', () => {
      const d = broken((p) => {
        p.gridPos = { ...(objects(dashboard.panels)[2]!.gridPos as JsonObject) };
        p.id = 1;
        p.datasource = { type: 'prometheus', uid: 'prom-1' };
        if (isObject(p.fieldConfig) && isObject(p.fieldConfig.defaults)) delete p.fieldConfig.defaults.unit;
      });
      const problems = layoutProblems(d).join('\n');
      assert.match(problems, /overlaps/);
      assert.match(problems, /id also used by panel 1 'Traffic'/);
      assert.match(problems, /no unit/);
      assert.match(problems, /datasource does not reference/);
    });
  });
});
