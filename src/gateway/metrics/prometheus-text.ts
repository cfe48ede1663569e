/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for the tests and for anyone who
 * wants to read /metrics from code: it throws on any line a Prometheus server would reject, checks that
 * every sample belongs to a declared family of the right type, and that histograms are consistent
 * (cumulative buckets, a `+Inf` bucket equal to `_count`).
 */
export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help: string | undefined;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(["counter", "gauge", "histogram", "summary", "untyped"]);

/** As Go's strconv.ParseFloat, which Prometheus uses: Inf and NaN in any letter case (prom-client writes "Nan"). */
function parseValue(text: string, line: number): number {
  const lower = text.toLowerCase();
  if (lower === "+inf" || lower === "inf" || lower === "+infinity" || lower === "infinity") return Number.POSITIVE_INFINITY;
  if (lower === "-inf" || lower === "-infinity") return Number.NEGATIVE_INFINITY;
  if (lower === "nan") return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`line ${line}: bad value '${text}'`);
  return Number(text);
}

/** Labels `{a="x",b="y\"z"}` starting at `text[0] === "{"`; returns them and the index after `}`. */
function parseLabels(text: string, line: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = 1;
  const fail = (why: string): never => {
    throw new Error(`line ${line}: ${why} in labels of '${text}'`);
  };
  while (i < text.length) {
    if (text[i] === "}") return { labels, end: i + 1 };
    const eq = text.indexOf("=", i);
    if (eq === -1) fail("missing '='");
    const name = text.slice(i, eq).trim();
    if (!LABEL_NAME.test(name)) fail(`bad label name '${name}'`);
    if (name in labels) fail(`duplicate label '${name}'`);
    if (text[eq + 1] !== '"') fail("label value not quoted");
    let value = "";
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const next = text[++j];
        if (next === "n") value += "\n";
        else if (next === "\\" || next === '"') value += next;
        else fail(`bad escape '\\${next ?? ""}'`);
      } else value += text[j];
    }
    if (j >= text.length) fail("unterminated label value");
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") fail("expected ',' or '}'");
  }
  return fail("unterminated label set");
}

/** The family a sample name belongs to, given the declared types (histogram and summary suffixes). */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(name);
  if (direct && direct.type !== "histogram" && direct.type !== "summary") return direct;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const base = families.get(name.slice(0, -suffix.length));
    if (base && (base.type === "histogram" || (base.type === "summary" && suffix !== "_bucket"))) return base;
  }
  if (direct?.type === "summary") return direct;
  return undefined;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const lines = text.split("\n");
  lines.forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === "") return;
    if (trimmed.startsWith("#")) {
      const match = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(trimmed);
      if (!match) return; // a plain comment
      const [, kind, name = "", rest = ""] = match;
      if (!METRIC_NAME.test(name)) throw new Error(`line ${line}: bad metric name '${name}'`);
      let family = families.get(name);
      if (kind === "TYPE") {
        if (!TYPES.has(rest as MetricType)) throw new Error(`line ${line}: bad type '${rest}'`);
        if (family && family.samples.length > 0) throw new Error(`line ${line}: TYPE of '${name}' after its samples`);
        if (family && family.type !== "untyped") throw new Error(`line ${line}: second TYPE for '${name}'`);
        if (family) family.type = rest as MetricType;
        else families.set(name, (family = { name, type: rest as MetricType, help: undefined, samples: [] }));
      } else {
        if (family?.help !== undefined) throw new Error(`line ${line}: second HELP for '${name}'`);
        if (family) family.help = rest;
        else families.set(name, { name, type: "untyped", help: rest, samples: [] });
      }
      return;
    }
    const nameEnd = trimmed.search(/[{\s]/);
    if (nameEnd <= 0) throw new Error(`line ${line}: no value in '${trimmed}'`);
    const name = trimmed.slice(0, nameEnd);
    if (!METRIC_NAME.test(name)) throw new Error(`line ${line}: bad metric name '${name}'`);
    let rest = trimmed.slice(nameEnd);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) {
      const parsed = parseLabels(rest, line);
      labels = parsed.labels;
      rest = rest.slice(parsed.end);
    }
    const parts = rest.trim().split(/\s+/);
    if (parts.length < 1 || parts.length > 2 || parts[0] === "") throw new Error(`line ${line}: expected a value (and a timestamp) in '${trimmed}'`);
    const value = parseValue(parts[0] as string, line);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`line ${line}: bad timestamp '${parts[1]}'`);
    let family = familyOf(name, families);
    if (!family) {
      family = { name, type: "untyped", help: undefined, samples: [] };
      families.set(name, family);
    }
    if (family.type === "counter" && !(value >= 0)) throw new Error(`line ${line}: counter '${name}' is ${value}`);
    if (family.type === "histogram" && name.endsWith("_bucket") && labels["le"] === undefined) throw new Error(`line ${line}: bucket without 'le'`);
    family.samples.push({ name, labels, value });
  });
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

function checkHistogram(family: Family): void {
  const series = new Map<string, { buckets: Array<[number, number]>; count?: number }>();
  const keyOf = (labels: Record<string, string>) =>
    JSON.stringify(Object.entries(labels).filter(([k]) => k !== "le").sort(([a], [b]) => a.localeCompare(b)));
  for (const sample of family.samples) {
    const key = keyOf(sample.labels);
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (sample.name.endsWith("_bucket")) entry.buckets.push([parseValue(sample.labels["le"] as string, 0), sample.value]);
    else if (sample.name.endsWith("_count")) entry.count = sample.value;
  }
  for (const [key, { buckets, count }] of series) {
    buckets.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < buckets.length; i++) {
      if ((buckets[i]?.[1] ?? 0) < (buckets[i - 1]?.[1] ?? 0)) throw new Error(`histogram ${family.name}${key}: buckets are not cumulative`);
    }
    const inf = buckets.at(-1);
    if (!inf || inf[0] !== Number.POSITIVE_INFINITY) throw new Error(`histogram ${family.name}${key}: no +Inf bucket`);
    if (count !== undefined && inf[1] !== count) throw new Error(`histogram ${family.name}${key}: +Inf bucket ${inf[1]} != count ${count}`);
  }
}

/** Sum of the samples named `name` whose labels include `labels`. */
export function sampleSum(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => sample.labels[k] === v)) sum += sample.value;
    }
  }
  return sum;
}
