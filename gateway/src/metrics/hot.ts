import type { Counter, Metric, Registry } from 'prom-client';

// The request path's metrics. prom-client's children validate and hash their label values on every
// inc() and observe() (~0.7 µs each, six per request: measured); here a child is found once per label
// values and counting is plain arithmetic. prom-client still owns the registry and the exposition: a
// hot counter hands its counts to its prom-client Counter when the registry is read, and a hot
// histogram is a registered metric that reports itself in prom-client's own shape.

type Labels = Record<string, string>;

/** One sample as prom-client's registry reads it from a metric's get(). */
interface Sample {
  value: number;
  metricName: string;
  labels: Record<string, string | number>;
}

/** Children by label values (in labelNames order), made on first use; found without building a key. */
class Children<C> {
  private root = new Map<string, unknown>();
  private made: C[] = [];

  constructor(
    private readonly labelNames: readonly string[],
    private readonly make: (labels: Labels) => C,
  ) {
    if (labelNames.length === 0) throw new Error('a hot metric has labels (use a plain prom-client metric otherwise)');
  }

  /** The child of these label values, given in labelNames order. */
  get(values: readonly string[]): C {
    if (values.length !== this.labelNames.length) throw new Error(`expected ${this.labelNames.length} label values, got ${values.length}`);
    let level = this.root;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      let next = level.get(values[i]) as Map<string, unknown> | undefined;
      if (next === undefined) level.set(values[i], (next = new Map()));
      level = next;
    }
    let child = level.get(values[last]) as C | undefined;
    if (child === undefined) {
      const labels: Labels = {};
      this.labelNames.forEach((name, i) => (labels[name] = values[i]));
      level.set(values[last], (child = this.make(labels)));
      this.made.push(child);
    }
    return child;
  }

  /** The child of these labels, given by name. */
  of(labels: Labels): C {
    return this.get(this.labelNames.map((name) => labels[name]));
  }

  all(): readonly C[] {
    return this.made;
  }

  clear(): void {
    this.root = new Map();
    this.made = [];
  }
}

class CountChild {
  pending = 0;
  constructor(readonly labels: Labels) {}

  inc(by = 1): void {
    this.pending += by;
  }
}

/**
 * Children of a prom-client counter for the request path: `counter` must call the returned
 * `flush` from its `collect()`, so what they counted is in it whenever the registry is read.
 */
export function hotCounter(labelNames: readonly string[]): { by: (...values: string[]) => CountChild; flush: (counter: Counter<string>) => void } {
  const children = new Children(labelNames, (labels) => new CountChild(labels));
  return {
    by: (...values) => children.get(values),
    flush: (counter) => {
      for (const child of children.all()) {
        if (child.pending === 0) continue;
        counter.inc(child.labels, child.pending);
        child.pending = 0;
      }
    },
  };
}

class HistogramChild {
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Labels,
    private readonly upperBounds: readonly number[],
  ) {
    this.counts = new Float64Array(upperBounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const bounds = this.upperBounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

export interface HotHistogramConfig {
  name: string;
  help: string;
  labelNames: readonly string[];
  buckets: readonly number[];
  registers: Registry[];
}

/** A histogram for the request path, registered and exposed as prom-client's Histogram is (same series, same shape). */
export class HotHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  private readonly upperBounds: readonly number[];
  private readonly children: Children<HistogramChild>;

  constructor(config: HotHistogramConfig) {
    this.name = config.name;
    this.help = config.help;
    this.upperBounds = [...config.buckets].sort((a, b) => a - b);
    this.children = new Children(config.labelNames, (labels) => new HistogramChild(labels, this.upperBounds));
    for (const registry of config.registers) registry.registerMetric(this as unknown as Metric);
  }

  labels(...values: string[]): HistogramChild {
    return this.children.get(values);
  }

  /** Sets the series to 0 (exported from now on, before its first observation), as prom-client's zero() does. */
  zero(labels: Labels): void {
    this.children.of(labels).reset();
  }

  reset(): void {
    this.children.clear();
  }

  /** What prom-client's Histogram.get() returns: per child, cumulative buckets (+Inf last), then _sum and _count. */
  async get(): Promise<{ name: string; help: string; type: 'histogram'; values: Sample[]; aggregator: 'sum' }> {
    const values: Sample[] = [];
    for (const child of this.children.all()) {
      let cumulative = 0;
      this.upperBounds.forEach((le, i) => {
        cumulative += child.counts[i];
        values.push({ value: cumulative, metricName: `${this.name}_bucket`, labels: { le, ...child.labels } });
      });
      cumulative += child.counts[this.upperBounds.length];
      values.push({ value: cumulative, metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...child.labels } });
      values.push({ value: child.sum, metricName: `${this.name}_sum`, labels: child.labels });
      values.push({ value: child.count, metricName: `${this.name}_count`, labels: child.labels });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}
