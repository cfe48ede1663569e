/**
 * Counters and histograms for the per-request path. prom-client hashes the label object on every update
 * (about 1 µs per counter or histogram); these keep one object per label set, found once per route and
 * status, so an update is an increment and a short bucket search. They render themselves in the text
 * format, after prom-client's registry.
 */

const escape = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

export function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([name, value]) => `${name}="${escape(value)}"`)
    .join(",");
}

const number = (value: number) => (Number.isNaN(value) ? "NaN" : value === Infinity ? "+Inf" : value === -Infinity ? "-Inf" : String(value));

export class CounterSeries {
  value = 0;
  constructor(readonly labels: string) {}
  inc(by = 1): void {
    this.value += by;
  }
}

export class FastCounter {
  private readonly series = new Map<string, CounterSeries>();
  constructor(
    readonly name: string,
    private readonly help: string,
  ) {}

  /** The series for these labels; keep it, updates then cost nothing more than `inc`. */
  labels(labels: Record<string, string>): CounterSeries {
    const text = labelText(labels);
    let series = this.series.get(text);
    if (!series) {
      series = new CounterSeries(text);
      this.series.set(text, series);
    }
    return series;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const s of this.series.values()) lines.push(`${this.name}{${s.labels}} ${number(s.value)}`);
    return `${lines.join("\n")}\n`;
  }
}

export class HistogramSeries {
  /** Per bucket, not cumulative; the last one is +Inf. */
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(
    readonly labels: string,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > (this.bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

export class FastHistogram {
  private readonly series = new Map<string, HistogramSeries>();
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly bounds: readonly number[],
  ) {}

  labels(labels: Record<string, string>): HistogramSeries {
    const text = labelText(labels);
    let series = this.series.get(text);
    if (!series) {
      series = new HistogramSeries(text, this.bounds);
      this.series.set(text, series);
    }
    return series;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.series.values()) {
      const prefix = s.labels === "" ? "" : `${s.labels},`;
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += s.counts[i] as number;
        lines.push(`${this.name}_bucket{${prefix}le="${number(bound)}"} ${cumulative}`);
      });
      lines.push(`${this.name}_bucket{${prefix}le="+Inf"} ${s.count}`);
      lines.push(`${this.name}_sum{${s.labels}} ${number(s.sum)}`);
      lines.push(`${this.name}_count{${s.labels}} ${s.count}`);
    }
    return `${lines.join("\n")}\n`;
  }
}
