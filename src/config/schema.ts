/**
 * The one config schema: defaults, types and validation. Keys keep the names of the original
 * llama-runner `config.json` so existing files load unchanged.
 */
import { z } from "zod";

// 0 asks the OS for a free port (handy for tests and side-by-side instances).
const port = z.number().int().min(0).max(65535);

/** Per-client limits of one listener (the API reference's defaults); 0 switches a limit off. */
const rateLimitsSchema = z.strictObject({
  /** Requests per minute from one client address. */
  requests_per_minute: z.number().int().min(0).default(100),
  /** Requests one client address may have in flight at once. */
  concurrent_requests: z.number().int().min(0).default(10),
  /** Streaming responses (SSE, NDJSON, WebSocket) one client address may hold open at once. */
  streaming_connections: z.number().int().min(0).default(5),
  /** Largest upload (audio files) in MB (10^6 bytes), enforced while it streams in: 413 as soon as it is crossed. */
  file_upload_size_mb: z.number().positive().default(100),
  /** Largest JSON request body. */
  json_body_mb: z.number().positive().default(16),
  /** Clients on 127.0.0.0/8 and ::1 are not limited. */
  exempt_loopback: z.boolean().default(false),
});

const timeoutsSchema = z.strictObject({
  /** A client must send its request headers within this (slow-header attacks). */
  headers_s: z.number().positive().default(30),
  /** A client must send its whole request, body included, within this. */
  request_s: z.number().positive().default(600),
  /** A response the client stops reading is abandoned after this long without progress. */
  write_stall_s: z.number().positive().default(120),
});

const listenerSchema = (defaultPort: number) =>
  z.strictObject({
    enabled: z.boolean().default(true),
    port: port.default(defaultPort),
    host: z.string().min(1).default("127.0.0.1"),
    rate_limits: rateLimitsSchema.prefault({}),
  });

/** Backend parameters stay open-ended: each backend maps the ones it knows and warns about the rest. */
const parametersSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]));

const UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** Bytes as a number or a string with a unit ("12GiB", "8 GB", "512MiB"). */
export const byteSize = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const match = typeof value === "number" ? null : /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(value);
  const bytes = typeof value === "number" ? value : match ? Number(match[1]) * (UNITS[(match[2] ?? "b").toLowerCase()] ?? NaN) : NaN;
  if (!Number.isFinite(bytes) || bytes <= 0) {
    ctx.addIssue({ code: "custom", message: `expected a positive size like 8GiB, 512MB or a number of bytes, got ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  return Math.round(bytes);
});

/** Seconds; 0 = never. */
const ttlSeconds = z.number().min(0);

export const modelConfigSchema = z
  .strictObject({
    /** The GGUF file; not needed for a `url` model or a `command` that names its own model. */
    model_path: z.string().min(1).optional(),
    /** The model name sent upstream, when the backend knows the model by another name. */
    model_id: z.string().min(1).optional(),
    aliases: z.array(z.string().min(1)).default([]),
    /** "embedded", a key of llama-runtimes, "command" or "url"; inferred from `command`/`url` when set. */
    runtime: z.string().min(1).optional(),
    parameters: parametersSchema.default({}),
    /** Any command that serves the OpenAI API; ${PORT}, ${MODEL_PATH} and ${MODEL_ID} are filled in. */
    command: z.string().min(1).optional(),
    /** Run instead of SIGTERM to stop a `command` backend (same macros, plus ${PID}). */
    stop_command: z.string().min(1).optional(),
    /** An upstream that is already running, local or remote: health-checked, never spawned. */
    url: z.url({ protocol: /^https?$/ }).optional(),
    /** Polled until it answers 200 to decide the backend is ready. */
    health_path: z.string().startsWith("/").default("/health"),
    /** Idle seconds before unloading; 0 = never; default: the global `ttl`. */
    ttl: ttlSeconds.optional(),
    /** Never evicted, never unloaded by TTL. */
    pinned: z.boolean().default(false),
    /** Loaded at start-up. */
    preload: z.boolean().default(false),
    /** false: requests never load it; it must be started (POST /v1/models/{id}/start) or preloaded. */
    auto_start: z.boolean().default(true),
    /** Memory this model needs, overriding the estimate from its GGUF header. */
    memory: byteSize.optional(),
    /**
     * Requests sent to the backend beyond its parallel slots, to wait in its own queue; default: as many as
     * the slots (0 for `command` backends, which may refuse work when busy).
     */
    queue_ahead: z.number().int().min(0).optional(),
  })
  .superRefine((model, ctx) => {
    if (model.runtime === "url" && !model.url) ctx.addIssue({ code: "custom", path: ["url"], message: "required when runtime is 'url'" });
    if (model.runtime === "command" && !model.command) ctx.addIssue({ code: "custom", path: ["command"], message: "required when runtime is 'command'" });
    if (!model.model_path && !model.url && !model.command) {
      ctx.addIssue({ code: "custom", path: ["model_path"], message: "required (or give `url` or `command`)" });
    }
  });
export type ModelConfig = z.infer<typeof modelConfigSchema>;

export const runtimeConfigSchema = z.union([
  z.string().min(1).transform((runtime) => ({ runtime, parameters: {} as z.infer<typeof parametersSchema> })),
  z.strictObject({ runtime: z.string().min(1), parameters: parametersSchema.default({}) }),
]);
export type RuntimeConfig = z.infer<typeof runtimeConfigSchema>;

export const configSchema = z.strictObject({
  models: z.record(z.string().min(1), modelConfigSchema).default({}),
  "llama-runtimes": z.record(z.string().min(1), runtimeConfigSchema).default({}),
  default_runtime: z.string().min(1).default("embedded"),
  concurrentRunners: z.number().int().min(1).default(1),
  /** Sum of loaded models' memory (measured RSS, estimated before load) stays within this; absent = no budget. */
  memory_budget: byteSize.optional(),
  /** Idle seconds before a model is unloaded; 0 = never. */
  ttl: ttlSeconds.default(0),
  /** Requests waiting for a model beyond this are refused with 503 and Retry-After. */
  max_queue: z.number().int().min(1).default(64),
  /** Folder searched (recursively) for `*.gguf` files; relative to the config file. */
  models_dir: z.string().min(1).default("models"),
  proxies: z
    .strictObject({
      ollama: listenerSchema(11434).prefault({}),
      lmstudio: listenerSchema(1234).prefault({}),
    })
    .prefault({}),
  /** Slow or silent clients cannot hold a connection or a backend slot forever. */
  timeouts: timeoutsSchema.prefault({}),
  /**
   * API keys clients must send (`Authorization: Bearer KEY` or `x-api-key: KEY`) on every route but
   * liveness; empty = no authentication. LLAMA_RUNNER_API_KEYS (comma-separated) adds more.
   */
  api_keys: z.array(z.string().min(8, "API keys must be at least 8 characters")).default([]),
  /**
   * The Ollama and LM Studio dialects (src/dialects/ollama, src/dialects/lmstudio): the version the Ollama API
   * reports and the browser origins allowed to call either listener.
   */
  ollama: z
    .strictObject({
      /** `GET /api/version`: a plain X.Y.Z (Open WebUI parses it as integers; Copilot needs >= 0.6.4). */
      version: z.string().regex(/^\d+\.\d+\.\d+$/, "expected a plain version like 0.12.6").default("0.12.6"),
      /**
       * Browser origins allowed besides Ollama's defaults (http(s)://localhost, 127.0.0.1 and 0.0.0.0 on any
       * port; app://, file://, tauri://, vscode-webview://, vscode-file://, browser extensions), as in
       * OLLAMA_ORIGINS: exact origins, `*` matches any run of characters ("https://*.example.com").
       */
      origins: z.array(z.string().min(1)).default([]),
    })
    .default({ version: "0.12.6", origins: [] }),
  runner: z
    .strictObject({
      /** Seconds a backend may take from spawn to a healthy /health before it is an error. */
      load_timeout_s: z.number().positive().default(120),
      /** Seconds between SIGTERM and SIGKILL when a backend is stopped. */
      stop_grace_s: z.number().positive().default(5),
      /** Linux CPU scheduling of spawned backends: `batch` (SCHED_BATCH, see runner/scheduling.ts) or `normal`. */
      scheduling: z.enum(["batch", "normal"]).default("batch"),
    })
    .default({ load_timeout_s: 120, stop_grace_s: 5, scheduling: "batch" }),
  /** Speech to text (src/audio): whisper.cpp models behind /v1/audio/transcriptions and /v1/audio/translations. */
  audio: z
    .strictObject({
      /** Whisper models (whisper.cpp ggml files), catalogue entries like the LLMs: loaded on demand, unloaded by TTL. */
      models: z
        .record(
          z.string().min(1),
          z.strictObject({
            model_path: z.string().min(1),
            aliases: z.array(z.string().min(1)).default([]),
            /** language, threads, temperature, best_of, ...; mapped to whisper.cpp, the rest reported and ignored. */
            parameters: parametersSchema.default({}),
            ttl: ttlSeconds.optional(),
            pinned: z.boolean().default(false),
            preload: z.boolean().default(false),
            /** Memory the model needs, overriding the estimate from its file size. */
            memory: byteSize.optional(),
          }),
        )
        .default({}),
      /** Longest decoded audio accepted, in seconds (decoded audio is held in memory: 32 kB per second). */
      max_duration_s: z.number().positive().default(10800),
      /** Seconds one transcription may run before it is stopped (its runner is recycled) and answered 503. */
      timeout_s: z.number().positive().default(600),
      /** Transcriptions per model that may be decoding, waiting or running at once; more get 429 with Retry-After. */
      max_queue: z.number().int().min(1).default(16),
      /** The decoder: an ffmpeg binary (a name on PATH or a path). */
      ffmpeg: z.string().min(1).default("ffmpeg"),
      /** Folder for upload temp files (one per request, always removed); default: the OS temp folder. */
      temp_dir: z.string().min(1).optional(),
    })
    .default({ models: {}, max_duration_s: 10800, timeout_s: 600, max_queue: 16, ffmpeg: "ffmpeg" }),
  /** Webhooks (src/gateway/webhooks): registrations and their delivery queue live in SQLite under LLAMA_RUNNER_HOME. */
  webhooks: z
    .strictObject({
      /** Seconds one delivery attempt may take (connect, answer and body) before it counts as failed. */
      timeout_s: z.number().positive().default(10),
      /** Attempts per delivery, the first included; then it is marked failed. */
      max_attempts: z.number().int().min(1).default(8),
      /** Wait before the first retry; it doubles with every further attempt (with 20 % jitter). */
      retry_initial_s: z.number().positive().default(2),
      /** The longest wait between two attempts. */
      retry_max_s: z.number().positive().default(600),
      /** Undelivered events one webhook may have queued; events beyond it are logged as failed at once. */
      max_pending: z.number().int().min(1).default(1000),
      /** Finished deliveries kept per webhook for the delivery log. */
      log_retention: z.number().int().min(1).default(200),
      /** Deliveries in flight at once, over all webhooks (each webhook gets its events one at a time, in order). */
      concurrency: z.number().int().min(1).default(4),
    })
    .prefault({}),
  /** The WebSocket API at /v1/ws (src/gateway/websocket). */
  websocket: z
    .strictObject({
      /** Seconds between pings; a client that has not answered the previous ping by then is disconnected. */
      ping_interval_s: z.number().positive().default(30),
      /** Largest message a client may send, in bytes. */
      max_message_bytes: z.number().int().min(1024).default(16 * 1024 * 1024),
      /** Chats one connection may run at once. */
      max_concurrent_chats: z.number().int().min(1).default(4),
      /** Bytes queued for a slow client before a chat stops reading its backend until the client catches up. */
      high_water_bytes: z.number().int().min(1024).default(1024 * 1024),
    })
    .prefault({}),
  /** GET /metrics (src/gateway/metrics): Prometheus text. */
  metrics: z
    .strictObject({
      /** Also export the Node.js process metrics (CPU, memory, event loop lag, GC). */
      process_metrics: z.boolean().default(true),
    })
    .prefault({}),
  /** GET /logs and /logs/stream (src/gateway/logs). */
  logs: z
    .strictObject({
      /** Lines kept per source (the gateway, each backend). */
      buffer_lines: z.number().int().min(10).default(1000),
    })
    .prefault({}),
  /** The gateway's own heap (src/gateway/idle-heap.ts). */
  heap: z
    .strictObject({
      /** Seconds without requests after which a heap grown by a busy spell is collected and given back; 0 = never (src/gateway/idle-heap.ts says why not sooner). */
      idle_collect_s: z.number().min(0).default(30),
    })
    .prefault({}),
  /** Create and serve a tiny random-weight demo model when no model is configured or discovered. */
  demo_model: z.boolean().default(true),
}).superRefine((config, ctx) => {
  // A typo in a runtime name should stop start-up, not surface as a failed load hours later.
  const known = ["embedded", "command", "url", ...Object.keys(config["llama-runtimes"])];
  const check = (runtime: string, path: PropertyKey[]) => {
    if (!known.includes(runtime)) {
      ctx.addIssue({ code: "custom", path, message: `unknown runtime '${runtime}' (expected one of: ${known.join(", ")})` });
    }
  };
  check(config.default_runtime, ["default_runtime"]);
  for (const [name, model] of Object.entries(config.models)) if (model.runtime) check(model.runtime, ["models", name, "runtime"]);
});

export type Config = z.infer<typeof configSchema>;
export type ListenerConfig = Config["proxies"]["ollama"];
export type ListenerName = keyof Config["proxies"];

/** What a fresh install writes to disk: the defaults, spelled out so users can edit them. */
export function defaultConfig(): Config {
  return configSchema.parse({});
}
