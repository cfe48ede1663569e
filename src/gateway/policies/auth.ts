/**
 * API keys. With keys configured every route needs one (Authorization: Bearer KEY or x-api-key:
 * KEY) except liveness and CORS preflights; with none configured every request passes, an empty
 * bearer token included (GitHub Copilot sends one).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { GatewayError } from "../../errors/index.js";

/** Liveness probes stay open so a load balancer or a client's "is it up?" check needs no key. */
export function isLiveness(method: string, url: string): boolean {
  // Compared in place: splitting the URL would allocate on every request.
  if (url === "/health" || url.startsWith("/health?")) return true;
  return (url === "/" || url.startsWith("/?")) && (method === "GET" || method === "HEAD");
}

const digest = (value: string) => createHash("sha256").update(value).digest();

export function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const header = headers["authorization"];
  if (typeof header === "string") {
    const match = /^Bearer\s+(.*)$/i.exec(header.trim());
    if (match && match[1]) return match[1].trim();
  }
  const apiKey = headers["x-api-key"];
  return typeof apiKey === "string" && apiKey.length > 0 ? apiKey : undefined;
}

/**
 * Compares digests, so every comparison takes the same time whatever the key's length or how much
 * of it matches; and it checks every configured key, so which one matched does not show either.
 */
export function keyMatches(candidate: string, keys: readonly Buffer[]): boolean {
  const given = digest(candidate);
  let matched = false;
  for (const key of keys) matched = timingSafeEqual(given, key) || matched;
  return matched;
}

/** The API-key check of a request's headers (undefined: no keys configured, every request passes). */
export function apiKeyCheck(keys: readonly string[]): ((headers: IncomingHttpHeaders) => GatewayError | undefined) | undefined {
  if (keys.length === 0) return undefined;
  const digests = keys.map(digest);
  // The verdict per presented string: hashing it costs more than proxying a small request. A lookup
  // tells a caller only whether that exact string was seen before, never how close a guess is, and
  // the answer itself (200 or 401) says more; bounded so a flood of guesses cannot grow it.
  const verdicts = new Map<string, boolean>();
  const matches = (candidate: string): boolean => {
    let ok = verdicts.get(candidate);
    if (ok === undefined) {
      ok = keyMatches(candidate, digests);
      if (verdicts.size >= 1024) verdicts.clear();
      verdicts.set(candidate, ok);
    }
    return ok;
  };
  return (headers) => {
    const candidate = presentedKey(headers);
    if (candidate === undefined) {
      return new GatewayError("invalid_api_key", "Missing API key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.");
    }
    return matches(candidate) ? undefined : new GatewayError("invalid_api_key", "Incorrect API key provided.");
  };
}
