/**
 * Ollama's `keep_alive`: a number of seconds (Continue sends 1800) or a Go duration string ("5m", "1h30m",
 * "300ms", "-1m", "0"). A bare number in a string ("-1", "600") is read as seconds too, as Ollama's
 * OLLAMA_KEEP_ALIVE is. Mapped onto the lifecycle's keep-alive: `undefined` = the model's configured TTL,
 * `0` = unload once this request is done, `null` = keep loaded forever (any negative value), else ms.
 */
import { invalidRequest } from "../../errors/index.js";

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, "μs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go's time.ParseDuration grammar: an optional sign, then one or more `<decimal><unit>`; "0" alone is allowed. */
export function parseGoDuration(text: string): number | undefined {
  const trimmed = text.trim();
  const match = /^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.exec(trimmed);
  if (trimmed === "0" || trimmed === "+0" || trimmed === "-0") return 0;
  if (!match) return undefined;
  let total = 0;
  for (const part of trimmed.replace(/^[+-]/, "").matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(part[1]) * (UNIT_MS[part[2] ?? "s"] ?? NaN);
  }
  return match[1] === "-" ? -total : total;
}

/** Milliseconds for the lifecycle: undefined (not given), 0 (unload after), null (forever) or a positive count. */
export function parseKeepAlive(value: unknown): number | null | undefined {
  if (value === undefined || value === null) return undefined;
  let ms: number | undefined;
  if (typeof value === "number" && Number.isFinite(value)) ms = value * 1000;
  else if (typeof value === "string") {
    const trimmed = value.trim();
    ms = /^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(trimmed) ? Number(trimmed) * 1000 : parseGoDuration(trimmed);
  }
  if (ms === undefined || Number.isNaN(ms)) {
    throw invalidRequest(`keep_alive: invalid duration ${JSON.stringify(value)} (expected seconds or a duration like "5m", "1h30m", "-1")`, "keep_alive");
  }
  if (ms < 0) return null;
  return Math.round(ms);
}
