/**
 * Browser-facing policy for both listeners, as Ollama applies it (server/routes.go `GenerateRoutes`,
 * envconfig `AllowedOrigins`, `allowedHostsMiddleware`):
 *
 * - CORS: requests from Ollama's default origins (http(s)://localhost, 127.0.0.1, 0.0.0.0 on any port;
 *   app://, file://, tauri://, vscode-webview://, vscode-file://; browser extensions) and the configured
 *   extra origins get `Access-Control-Allow-Origin`; preflights are answered on every route with Ollama's
 *   header list plus any `x-stainless-*` header openai-node asks for. A request carrying any other Origin
 *   is refused with 403, as Ollama's CORS middleware does: a web page must not drive a local model server.
 * - Host check: when the listener is bound to a loopback address, a request whose Host is not a local name
 *   or address is refused with 403 (DNS rebinding protection).
 *
 * The headers are written here rather than by `@fastify/cors`: its per-request options (needed for the
 * per-preflight header list) cost ~5% of the gateway's CPU on a small proxied request, and a reply that
 * streams writes to the raw response, past Fastify's headers, so they belong on the raw response anyway.
 */
import { hostname, networkInterfaces } from "node:os";
import { isIP } from "node:net";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** Ollama's `AllowHeaders`, in its order. */
export const ALLOWED_HEADERS = [
  "Authorization",
  "Content-Type",
  "User-Agent",
  "Accept",
  "X-Requested-With",
  "OpenAI-Beta",
  "x-stainless-arch",
  "x-stainless-async",
  "x-stainless-custom-poll-interval",
  "x-stainless-helper-method",
  "x-stainless-lang",
  "x-stainless-os",
  "x-stainless-package-version",
  "x-stainless-poll-helper",
  "x-stainless-retry-count",
  "x-stainless-runtime",
  "x-stainless-runtime-version",
  "x-stainless-timeout",
] as const;

/** gin-contrib/cors's default methods. */
export const ALLOWED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] as const;

/** 12 hours, gin-contrib/cors's default. */
const PREFLIGHT_MAX_AGE_S = 12 * 60 * 60;

const LOCAL_ORIGIN = /^https?:\/\/(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(:\d+)?$/i;
const APP_SCHEMES = ["app:", "file:", "tauri:", "vscode-webview:", "vscode-file:"];
/** gin-contrib/cors `AllowBrowserExtensions`. */
const EXTENSION_SCHEMES = ["chrome-extension:", "moz-extension:", "safari-extension:", "safari-web-extension:", "ms-browser-extension:"];

/** A configured origin: exact, or with `*` wildcards (OLLAMA_ORIGINS style). */
export function originPattern(origin: string): RegExp {
  const escaped = origin.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"));
  return new RegExp(`^${escaped.join(".*")}$`, "i");
}

export function originAllowed(origin: string, extra: readonly RegExp[], host?: string): boolean {
  if (LOCAL_ORIGIN.test(origin)) return true;
  const lower = origin.toLowerCase();
  if ([...APP_SCHEMES, ...EXTENSION_SCHEMES].some((scheme) => lower.startsWith(`${scheme}//`))) return true;
  // Same origin (a page served by this very listener) is never a cross-origin request.
  if (host !== undefined && (lower === `http://${host.toLowerCase()}` || lower === `https://${host.toLowerCase()}`)) return true;
  return extra.some((pattern) => pattern.test(origin));
}

function ipv4Private(ip: string): boolean {
  const [a = -1, b = -1] = ip.split(".").map(Number);
  return a === 127 || a === 10 || a === 0 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
}

/** Loopback, private or unspecified (Go's IsLoopback || IsPrivate || IsUnspecified). */
function localAddress(ip: string): boolean {
  const lower = ip.toLowerCase();
  if (isIP(lower) === 4) return ipv4Private(lower);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped?.[1] !== undefined) return ipv4Private(mapped[1]);
  return lower === "::1" || lower === "::" || /^f[cd][0-9a-f]{0,2}:/.test(lower);
}

function interfaceAddress(ip: string): boolean {
  const lower = ip.toLowerCase();
  return Object.values(networkInterfaces()).some((list) => (list ?? []).some((item) => item.address.toLowerCase() === lower));
}

export function isLoopback(address: string): boolean {
  const lower = address.toLowerCase();
  return lower.startsWith("127.") || lower === "::1" || lower.startsWith("::ffff:127.") || lower === "localhost";
}

/** The host part of a Host header: `[::1]:1234` → `::1`, `example.com:80` → `example.com`. */
export function hostOf(header: string): string {
  const trimmed = header.trim();
  if (trimmed.startsWith("[")) return trimmed.slice(1, trimmed.indexOf("]") > 0 ? trimmed.indexOf("]") : undefined);
  const colons = trimmed.split(":").length - 1;
  // A bare IPv6 address has several colons and no port.
  if (colons === 1) return trimmed.slice(0, trimmed.indexOf(":"));
  return trimmed;
}

/** Ollama's `allowedHostsMiddleware` rule for a listener bound to loopback. */
export function hostAllowed(header: string | undefined): boolean {
  const host = hostOf(header ?? "").toLowerCase();
  if (host === "" || host === "localhost") return true;
  if (isIP(host) !== 0) return localAddress(host) || interfaceAddress(host);
  if (host === hostname().toLowerCase()) return true;
  return [".localhost", ".local", ".internal"].some((tld) => host.endsWith(tld));
}

export interface NetworkPolicyOptions {
  /** Extra allowed origins (config `ollama.origins`), exact or with `*`. */
  origins?: readonly string[];
  /** The 403 body in the listener's wire format (OpenAI or Ollama, by route). */
  forbidden(message: string, request: FastifyRequest): unknown;
  /** Whether the listener is bound to loopback; by default read from the server's bound address. */
  boundToLoopback?: () => boolean;
}

const KNOWN_HEADERS = new Set(ALLOWED_HEADERS.map((h) => h.toLowerCase()));

/** Headers a preflight may use: Ollama's list plus any `x-stainless-*` the client names. */
function allowedHeadersFor(request: FastifyRequest): string[] {
  const asked = String(request.headers["access-control-request-headers"] ?? "")
    .split(",")
    .map((h) => h.trim())
    .filter((h) => /^x-stainless-[a-z0-9-]+$/i.test(h));
  return [...ALLOWED_HEADERS, ...asked.filter((h) => !KNOWN_HEADERS.has(h.toLowerCase()))];
}

const ALLOWED_METHODS_VALUE = ALLOWED_METHODS.join(", ");

/** The Host rule's verdict per Host header: clients send the same one or two values over and over. */
const HOST_VERDICTS_MAX = 256;

/**
 * Installs the policy on a listener. Call it before registering the routes: Fastify gives a route the
 * hooks that exist when the route's plugin loads.
 */
export function registerNetworkPolicy(app: FastifyInstance, options: NetworkPolicyOptions): void {
  const extra = (options.origins ?? []).map(originPattern);
  // The bound address does not change once the listener listens: read it once, not per request.
  let loopback: boolean | undefined;
  const boundToLoopback =
    options.boundToLoopback ??
    (() => {
      if (loopback !== undefined) return loopback;
      const address = app.server.address();
      if (typeof address !== "object" || address === null) return false;
      return (loopback = isLoopback(address.address));
    });
  const hostVerdicts = new Map<string | undefined, boolean>();
  const hostOk = (host: string | undefined): boolean => {
    let verdict = hostVerdicts.get(host);
    if (verdict === undefined) {
      verdict = hostAllowed(host);
      if (hostVerdicts.size >= HOST_VERDICTS_MAX) hostVerdicts.clear();
      hostVerdicts.set(host, verdict);
    }
    return verdict;
  };

  // Callback-style hooks: an async hook costs a promise and a microtask hop on every request.
  app.addHook("onRequest", function networkPolicy(request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) {
    const host = request.headers.host;
    if (boundToLoopback() && !hostOk(host)) {
      void reply.code(403).send(options.forbidden(`Forbidden: Host "${host ?? ""}" is not a local name (DNS rebinding protection).`, request));
      return;
    }
    const origin = request.headers.origin;
    if (origin !== undefined) {
      if (!originAllowed(origin, extra, host)) {
        void reply
          .code(403)
          .send(options.forbidden(`Forbidden: origin "${origin}" is not allowed; add it to "ollama.origins" in config.json.`, request));
        return;
      }
      // On the raw response, so that streamed answers (which bypass Fastify's headers) carry them too.
      reply.raw.setHeader("access-control-allow-origin", origin);
      reply.raw.setHeader("vary", "Origin");
    }
    done();
  });

  // Every route answers OPTIONS: 204, and for a preflight the methods, headers and max age it asks about.
  app.options("*", (request, reply) => {
    if (request.headers["access-control-request-method"] !== undefined) {
      reply.raw.setHeader("access-control-allow-methods", ALLOWED_METHODS_VALUE);
      reply.raw.setHeader("access-control-allow-headers", allowedHeadersFor(request).join(", "));
      reply.raw.setHeader("access-control-max-age", String(PREFLIGHT_MAX_AGE_S));
    }
    void reply.code(204).send();
  });
}
