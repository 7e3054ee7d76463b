/**
 * Request counts, durations and in-flight gauges kept as plain numbers per
 * (service, endpoint): recording one request is a few array writes with no
 * label lookup or hashing (prom-client hashes its label set on every
 * observation, even through a bound child). The numbers become Prometheus
 * samples only when scraped, in prom-client's metric format, so exposition
 * and the supervisor's aggregation of workers stay prom-client's.
 */

const CODE_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** The index in CODE_CLASSES of a status (0 and other non-statuses count as 1xx, 6xx and up as 5xx). */
function codeClass(status: number): number {
  return status < 200 ? 0 : status >= 500 ? 4 : ((status / 100) | 0) - 1;
}

/** One (service, endpoint) pair's numbers. */
export class RequestSeries {
  readonly service: string;
  readonly endpoint: string;
  readonly byClass = new Float64Array(CODE_CLASSES.length);
  /** Non-cumulative: bucket i counts durations in (bounds[i-1], bounds[i]]; the last one is +Inf. */
  readonly buckets: Float64Array;
  sum = 0;
  private readonly bounds: readonly number[];

  constructor(service: string, endpoint: string, bounds: readonly number[]) {
    this.service = service;
    this.endpoint = endpoint;
    this.bounds = bounds;
    this.buckets = new Float64Array(bounds.length + 1);
  }

  finished(status: number, seconds: number): void {
    this.byClass[codeClass(status)]!++;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    this.buckets[i]!++;
    this.sum += seconds;
  }
}

/** A prom-client metric value (the shape its registry formats and aggregates). */
interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface MetricData {
  name: string;
  help: string;
  type: 'counter' | 'histogram' | 'gauge';
  values: Sample[];
  aggregator: 'sum';
}

/** The collector objects registered with prom-client's registry (its Metric contract: name + get()). */
export interface Collector {
  readonly name: string;
  get(): Promise<MetricData>;
}

/** Adds one sample per status class that has counts, each with `labels` and its class under `classLabel`. */
function pushByClass(values: Sample[], byClass: Float64Array, labels: Readonly<Record<string, string>>): void {
  CODE_CLASSES.forEach((code, i) => {
    const value = byClass[i]!;
    if (value > 0) values.push({ value, labels: { ...labels, code_class: code } });
  });
}

export class RequestSeriesSet {
  private readonly series = new Map<string, RequestSeries>();
  private readonly inFlight = new Map<string, { value: number }>();
  private readonly bounds: readonly number[];

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
  }

  /** The series of (service, endpoint), created on first use and kept until removed. */
  bind(service: string, endpoint: string): RequestSeries {
    const key = `${service}\u0000${endpoint}`;
    let s = this.series.get(key);
    if (s === undefined) this.series.set(key, (s = new RequestSeries(service, endpoint, this.bounds)));
    return s;
  }

  remove(service: string, endpoint: string): void {
    this.series.delete(`${service}\u0000${endpoint}`);
  }

  /** A service's in-flight count, as a mutable cell the data path increments. */
  inFlightCell(service: string): { value: number } {
    let cell = this.inFlight.get(service);
    if (cell === undefined) this.inFlight.set(service, (cell = { value: 0 }));
    return cell;
  }

  requestsCollector(name: string, help: string): Collector {
    return {
      name,
      get: () => {
        const values: Sample[] = [];
        for (const s of this.series.values()) pushByClass(values, s.byClass, { service: s.service, endpoint: s.endpoint });
        return Promise.resolve({ name, help, type: 'counter', values, aggregator: 'sum' });
      },
    };
  }

  durationCollector(name: string, help: string): Collector {
    return {
      name,
      get: () => {
        const values: Sample[] = [];
        for (const s of this.series.values()) {
          let count = 0;
          for (const n of s.buckets) count += n;
          if (count === 0) continue;
          const labels = { service: s.service, endpoint: s.endpoint };
          let cumulative = 0;
          this.bounds.forEach((le, i) => {
            cumulative += s.buckets[i]!;
            values.push({ value: cumulative, labels: { ...labels, le }, metricName: `${name}_bucket` });
          });
          values.push({ value: count, labels: { ...labels, le: '+Inf' }, metricName: `${name}_bucket` });
          values.push({ value: s.sum, labels, metricName: `${name}_sum` });
          values.push({ value: count, labels, metricName: `${name}_count` });
        }
        return Promise.resolve({ name, help, type: 'histogram', values, aggregator: 'sum' });
      },
    };
  }

  inFlightCollector(name: string, help: string): Collector {
    return {
      name,
      get: () =>
        Promise.resolve({
          name,
          help,
          type: 'gauge',
          values: [...this.inFlight].map(([service, cell]) => ({ value: cell.value, labels: { service } })),
          aggregator: 'sum',
        }),
    };
  }
}

/** A (service, route) pair's requests by status class. */
export class RouteCounts {
  readonly service: string;
  readonly route: string;
  readonly byClass = new Float64Array(CODE_CLASSES.length);

  constructor(service: string, route: string) {
    this.service = service;
    this.route = route;
  }

  finished(status: number): void {
    this.byClass[codeClass(status)]!++;
  }
}

/** Requests that took a configured route, kept as plain numbers like RequestSeriesSet's and turned into samples at scrape. */
export class RouteCountSet {
  private readonly counts = new Map<string, RouteCounts>();

  /** The counts of (service, route), created on first use; a rebuilt policy binds the same ones again. */
  bind(service: string, route: string): RouteCounts {
    const key = `${service}\u0000${route}`;
    let c = this.counts.get(key);
    if (c === undefined) this.counts.set(key, (c = new RouteCounts(service, route)));
    return c;
  }

  collector(name: string, help: string): Collector {
    return {
      name,
      get: () => {
        const values: Sample[] = [];
        for (const c of this.counts.values()) pushByClass(values, c.byClass, { service: c.service, route: c.route });
        return Promise.resolve({ name, help, type: 'counter', values, aggregator: 'sum' });
      },
    };
  }
}
