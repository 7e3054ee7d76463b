/**
 * Micro-benchmark of the per-request CPU work of balancing: one pick per
 * algorithm (built by createBalancer, as meshd builds it) over 3, 10 and 100
 * endpoints, the peak-EWMA update and cost reads, and Endpoint.record (the
 * per-response bookkeeping). Inputs are seeded and the clock is fake, so every
 * run does exactly the same work.
 *
 * Each case runs in a fresh Node process (this file with `--case ID`): in one
 * process the balancers' shared call sites would turn polymorphic and the
 * numbers would depend on the order of the cases.
 *
 * Run: `node bench/micro.ts` (prints the table and writes results/<date>-micro.md);
 * `node bench/micro.ts --case ID` prints one case's raw batches as JSON.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Balancer } from '../src/balancer/balancer.ts';
import { createBalancer } from '../src/balancer/create.ts';
import { Endpoint, type EndpointRecorder, type Upstream } from '../src/balancer/endpoint.ts';
import { DEFAULT_PEAK_EWMA, PeakEwma } from '../src/balancer/peak-ewma.ts';
import { seededRandom, type Random } from '../src/clock.ts';
import type { BalancerAlgorithm, BalancerConfig, EndpointSpec } from '../src/config/types.ts';
import { isEndpointFailure, type Outcome } from '../src/protocol/outcome.ts';
import { cpuModel, gitRevision, log, resultPath } from './common.ts';

const SEED = 20_261_123;
/** The fake clock for picks: endpoints joined at 0, their history ends just before this. */
const NOW_MS = 600_000;
const ENDPOINT_COUNTS = [3, 10, 100] as const;
const WARMUP_OPS = 200_000;
/** Timed once after warm-up to size the batches. */
const PROBE_OPS = 100_000;
const BATCHES = 7;
const BATCH_TARGET_NS = 100_000_000;
const MAX_BATCH_OPS = 200_000_000;
/** Per-op inputs cycle through this many precomputed values, so no RNG runs in the timed loop. */
const INPUTS = 4096;
const INPUT_MASK = INPUTS - 1;
/** Responses of history per endpoint before the picks, and their spacing on the fake clock. */
const HISTORY = 64;
const HISTORY_SPACING_MS = 100;
/** Fake-clock step between responses in observe/record: 10k responses/s, so the outcome window rotates as under load. */
const RESPONSE_SPACING_MS = 0.1;
const ZONES = ['zone-a', 'zone-b', 'zone-c'] as const;
const NODE_ZONE = 'zone-a';
const CASE_FLAG = '--case';
const SELF = fileURLToPath(import.meta.url);

/** Runs `ops` operations and returns a value that depends on every result, so none can be optimised away. */
type Loop = (ops: number) => number;

interface MicroCase {
  readonly id: string;
  readonly operation: string;
  readonly endpoints: number | undefined;
  readonly build: (random: Random) => Loop;
}

interface CaseResult {
  readonly nsPerOp: readonly number[];
  readonly opsPerBatch: number;
  readonly sink: number;
}

// ---------------------------------------------------------------- endpoints

const upstream: Upstream = { close: async () => {} };
const recorder: EndpointRecorder = { finished() {} };

function makeEndpoint(index: number): Endpoint {
  const host = `10.0.${index >> 8}.${index & 255}`;
  const port = 8080;
  const spec: EndpointSpec = {
    address: `${host}:${port}`,
    host,
    port,
    zone: ZONES[index % ZONES.length],
    weight: 1 + (index % 3),
    labels: {},
    identity: undefined,
  };
  return new Endpoint(spec, upstream, recorder, 0);
}

/** Gives an endpoint latency and failure history and some load, so costs differ and picks compare them. */
function giveHistory(endpoint: Endpoint, index: number, random: Random): void {
  const typicalMs = 5 + 45 * random();
  // Every 7th endpoint fails often, so p2c-ewma's health-first comparison decides some picks.
  const failureRate = index % 7 === 3 ? 0.3 : 0.01;
  for (let k = HISTORY; k > 0; k--) {
    const outcome: Outcome = random() < failureRate ? 'http_5xx' : 'success';
    endpoint.record(outcome, typicalMs * (0.5 + random()), NOW_MS - k * HISTORY_SPACING_MS);
  }
  endpoint.inFlight = Math.floor(random() * 8);
}

function endpointsWithHistory(count: number, random: Random): Endpoint[] {
  return Array.from({ length: count }, (_, i) => {
    const endpoint = makeEndpoint(i);
    giveHistory(endpoint, i, random);
    return endpoint;
  });
}

// ---------------------------------------------------------------- picks

const PICK_VARIANTS = ['p2c-ewma', 'least-request', 'round-robin', 'weighted-round-robin', 'ring-hash', 'zone-aware'] as const;
type PickVariant = (typeof PICK_VARIANTS)[number];

const PICK_LABELS: Record<PickVariant, string> = {
  'p2c-ewma': 'pick: p2c-ewma (default)',
  'least-request': 'pick: least-request',
  'round-robin': 'pick: round-robin',
  'weighted-round-robin': 'pick: weighted-round-robin',
  'ring-hash': 'pick: ring-hash (varying key)',
  'zone-aware': 'pick: zone-aware p2c-ewma (⅓ local)',
};

/** The config load.ts produces by default, with only the algorithm (and what it needs) set. */
function balancerConfig(variant: PickVariant): BalancerConfig {
  const algorithm: BalancerAlgorithm = variant === 'zone-aware' ? 'p2c-ewma' : variant;
  return {
    algorithm,
    decayMs: DEFAULT_PEAK_EWMA.decayMs,
    defaultRttMs: DEFAULT_PEAK_EWMA.defaultRttMs,
    failurePenalty: DEFAULT_PEAK_EWMA.failurePenalty,
    hashOn: algorithm === 'ring-hash' ? { header: 'x-user' } : undefined,
    zoneAware: variant === 'zone-aware',
    slowStart: { windowMs: 0, aggression: 1, minWeight: 0.1 },
  };
}

/** Request hash keys: user ids for ring-hash, none for the others. */
function requestKeys(variant: PickVariant, random: Random): (string | undefined)[] {
  if (variant !== 'ring-hash') return new Array<string | undefined>(INPUTS).fill(undefined);
  return Array.from({ length: INPUTS }, () => `user-${Math.floor(random() * 1_000_000)}`);
}

function pickLoop(variant: PickVariant, endpointCount: number, random: Random): Loop {
  const balancer: Balancer = createBalancer(balancerConfig(variant), NODE_ZONE, seededRandom(SEED + 1));
  balancer.setEndpoints(endpointsWithHistory(endpointCount, random));
  const keys = requestKeys(variant, random);
  return (ops) => {
    let sum = 0;
    for (let i = 0; i < ops; i++) sum += balancer.pick(NOW_MS, keys[i & INPUT_MASK])?.inFlight ?? -1;
    return sum;
  };
}

// ---------------------------------------------------------------- per-response work

interface ResponseInputs {
  readonly outcomes: readonly Outcome[];
  readonly failed: Uint8Array;
  readonly latencyMs: Float64Array;
}

/** Mostly successes with a few 5xx and client aborts; latencies around 20 ms with occasional 10× spikes. */
function responseInputs(random: Random): ResponseInputs {
  const outcomes: Outcome[] = [];
  const failed = new Uint8Array(INPUTS);
  const latencyMs = new Float64Array(INPUTS);
  for (let i = 0; i < INPUTS; i++) {
    const r = random();
    const outcome: Outcome = r < 0.01 ? 'client_abort' : r < 0.03 ? 'http_5xx' : 'success';
    outcomes.push(outcome);
    failed[i] = isEndpointFailure(outcome) ? 1 : 0;
    latencyMs[i] = 20 * (0.25 + 1.5 * random()) * (random() < 0.02 ? 10 : 1);
  }
  return { outcomes, failed, latencyMs };
}

function observeLoop(random: Random): Loop {
  const ewma = new PeakEwma(DEFAULT_PEAK_EWMA, NOW_MS);
  const { failed, latencyMs } = responseInputs(random);
  let now = NOW_MS;
  return (ops) => {
    let t = now;
    for (let i = 0; i < ops; i++) {
      t += RESPONSE_SPACING_MS;
      ewma.observe(latencyMs[i & INPUT_MASK]!, failed[i & INPUT_MASK] === 1, t);
    }
    now = t;
    return ewma.rttAt(t);
  };
}

/** A measured estimate read at varying times and loads, as P2C reads its two candidates. */
function readLoop(random: Random, read: (ewma: PeakEwma, inFlight: number, now: number) => number): Loop {
  const endpoint = endpointsWithHistory(1, random)[0]!;
  const ewma = endpoint.load;
  const inFlight = Int32Array.from({ length: INPUTS }, () => Math.floor(random() * 8));
  const at = Float64Array.from({ length: INPUTS }, () => NOW_MS + 1_000 * random());
  return (ops) => {
    let sum = 0;
    for (let i = 0; i < ops; i++) sum += read(ewma, inFlight[i & INPUT_MASK]!, at[i & INPUT_MASK]!);
    return sum;
  };
}

function recordLoop(random: Random): Loop {
  const endpoint = makeEndpoint(0);
  const { outcomes, latencyMs } = responseInputs(random);
  let now = NOW_MS;
  return (ops) => {
    let t = now;
    for (let i = 0; i < ops; i++) {
      t += RESPONSE_SPACING_MS;
      endpoint.record(outcomes[i & INPUT_MASK]!, latencyMs[i & INPUT_MASK]!, t);
    }
    now = t;
    return endpoint.load.rttAt(t);
  };
}

function microCases(): MicroCase[] {
  const picks = PICK_VARIANTS.flatMap((variant) =>
    ENDPOINT_COUNTS.map((count) => ({
      id: `pick-${variant}-${count}`,
      operation: PICK_LABELS[variant],
      endpoints: count,
      build: (random: Random) => pickLoop(variant, count, random),
    })),
  );
  const perResponse: MicroCase[] = [
    { id: 'ewma-observe', operation: 'PeakEwma.observe (EWMA update)', endpoints: undefined, build: observeLoop },
    {
      id: 'ewma-cost',
      operation: 'PeakEwma.cost (p2c-ewma cost read)',
      endpoints: undefined,
      build: (r) => readLoop(r, (e, inFlight, now) => e.cost(inFlight, now)),
    },
    {
      id: 'ewma-failure-rate',
      operation: 'PeakEwma.failureRateAt (p2c health read)',
      endpoints: undefined,
      build: (r) => readLoop(r, (e, _, now) => e.failureRateAt(now)),
    },
    { id: 'endpoint-record', operation: 'Endpoint.record (EndpointStats + PeakEwma)', endpoints: undefined, build: recordLoop },
  ];
  return [...picks, ...perResponse];
}

// ---------------------------------------------------------------- measuring (child process)

function timeNs(loop: Loop, ops: number): { ns: number; sink: number } {
  const start = process.hrtime.bigint();
  const sink = loop(ops);
  return { ns: Number(process.hrtime.bigint() - start), sink };
}

/** Warm-up, a probe to size batches of ≥ BATCH_TARGET_NS, then BATCHES timed batches. */
function measure(loop: Loop): CaseResult {
  let sink = loop(WARMUP_OPS);
  const probe = timeNs(loop, PROBE_OPS);
  sink += probe.sink;
  const opsPerBatch = Math.min(MAX_BATCH_OPS, Math.max(PROBE_OPS, Math.ceil((BATCH_TARGET_NS / Math.max(1, probe.ns)) * PROBE_OPS)));
  const nsPerOp: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const batch = timeNs(loop, opsPerBatch);
    sink += batch.sink;
    nsPerOp.push(batch.ns / opsPerBatch);
  }
  return { nsPerOp, opsPerBatch, sink };
}

function runCaseHere(id: string): CaseResult {
  const found = microCases().find((c) => c.id === id);
  if (found === undefined)
    throw new Error(
      `unknown case "${id}"; known: ${microCases()
        .map((c) => c.id)
        .join(', ')}`,
    );
  return measure(found.build(seededRandom(SEED)));
}

// ---------------------------------------------------------------- orchestration (parent)

const execFileAsync = promisify(execFile);

function parseResult(id: string, stdout: string): CaseResult {
  const value: unknown = JSON.parse(stdout);
  const result = value as Partial<CaseResult> | null;
  if (!Array.isArray(result?.nsPerOp) || result.nsPerOp.length !== BATCHES || typeof result.opsPerBatch !== 'number') {
    throw new Error(`case ${id}: unexpected output ${stdout.slice(0, 200)}`);
  }
  return { nsPerOp: result.nsPerOp, opsPerBatch: result.opsPerBatch, sink: Number(result.sink) };
}

async function runCaseInChild(id: string): Promise<CaseResult> {
  const { stdout } = await execFileAsync(process.execPath, [SELF, CASE_FLAG, id], { timeout: 60_000 });
  return parseResult(id, stdout);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function formatNs(ns: number): string {
  return ns < 10 ? ns.toFixed(2) : ns < 100 ? ns.toFixed(1) : ns.toFixed(0);
}

function formatOps(ops: number): string {
  return ops >= 1_000_000 ? `${(ops / 1_000_000).toFixed(1)}M` : `${Math.round(ops / 1_000)}k`;
}

function tableRow(c: MicroCase, r: CaseResult): string {
  const range = `${formatNs(Math.min(...r.nsPerOp))}..${formatNs(Math.max(...r.nsPerOp))}`;
  return `| ${c.operation} | ${c.endpoints ?? '–'} | ${formatNs(median(r.nsPerOp))} | ${range} | ${BATCHES} × ${formatOps(r.opsPerBatch)} |`;
}

function report(started: Date, rows: readonly { c: MicroCase; r: CaseResult }[]): string {
  return [
    '## meshd micro-benchmark: balancer picks and per-response bookkeeping',
    '',
    `- Date: ${started.toISOString()}`,
    `- Node: ${process.version}`,
    `- CPU: ${cpuModel()}`,
    `- meshd revision: ${gitRevision()}`,
    `- Method: each case in a fresh Node process; ${WARMUP_OPS / 1_000}k warm-up ops, then ${BATCHES} timed batches of ≥ ${BATCH_TARGET_NS / 1_000_000} ms (process.hrtime.bigint); median and min..max ns/op over the batches.`,
    `- Inputs (seeded): picks at a fixed fake clock; every endpoint eligible, weight 1–3, zones a/b/c in turn (this node in zone-a), in-flight 0–7, ${HISTORY} responses of history ending ${HISTORY_SPACING_MS} ms before the clock, every 7th endpoint failing 30 % (zone-aware with 3 endpoints: one is local, so P2C takes it without drawing). observe/record: 97 % success, 2 % 5xx, 1 % client abort, fake clock +${RESPONSE_SPACING_MS} ms per response.`,
    '',
    '| operation | endpoints | ns/op (median) | min..max ns/op | batches × ops |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map(({ c, r }) => tableRow(c, r)),
    '',
  ].join('\n');
}

/** Runs every case, one child process at a time (the machine is shared: never in parallel), and returns the markdown report. */
export async function runMicro(): Promise<string> {
  const started = new Date();
  const rows: { c: MicroCase; r: CaseResult }[] = [];
  for (const c of microCases()) {
    log(`micro: ${c.id}`);
    rows.push({ c, r: await runCaseInChild(c.id) });
  }
  return report(started, rows);
}

function caseArgument(): string | undefined {
  const at = process.argv.indexOf(CASE_FLAG);
  return at < 0 ? undefined : process.argv[at + 1];
}

if (import.meta.main) {
  const caseId = caseArgument();
  if (caseId !== undefined) {
    process.stdout.write(JSON.stringify(runCaseHere(caseId)));
  } else {
    const markdown = await runMicro();
    const file = resultPath(new Date(), 'micro', false);
    writeFileSync(file, markdown);
    process.stdout.write(markdown);
    log(`micro: written to ${file}`);
  }
}
