/**
 * Model management and system endpoints (`/v1/models/{id}/...`, `/v1/system/status`,
 * `/v1/server/info`), on both listeners, in the API reference's shapes.
 */
import { basename } from "node:path";
import type { FastifyInstance } from "fastify";
import type { Catalog, ModelEntry } from "../../catalog/catalog.js";
import { modelNotFound } from "../../errors/index.js";
import { CpuSampler, memoryFigures } from "../../gateway/system-stats.js";
import type { Lifecycle, ModelStatus } from "../../lifecycle/lifecycle.js";

export interface ManagementRoutesOptions {
  catalog: Catalog;
  lifecycle: Lifecycle;
  version: string;
  /** Each listener and whether it is serving. */
  proxies(): Record<string, { status: "running" | "stopped" | "disabled"; port: number }>;
}

/** The reference's four states, plus "unloading" while a stop drains: memory is not free yet. */
type PublicStatus = "loaded" | "loading" | "unloading" | "unloaded" | "error";

export function publicStatus(status: ModelStatus): PublicStatus {
  switch (status.state) {
    case "ready":
      return "loaded";
    case "loading":
      return "loading";
    case "error":
      return "error";
    case "stopping":
      return "unloading";
    case "unloaded":
      return "unloaded";
  }
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

export async function managementRoutes(app: FastifyInstance, { catalog, lifecycle, version, proxies }: ManagementRoutesOptions): Promise<void> {
  const cpu = new CpuSampler();
  const find = (id: string): ModelEntry => {
    const entry = catalog.resolve(id);
    if (!entry) throw modelNotFound(id);
    return entry;
  };

  app.get<{ Params: { id: string } }>("/v1/models/:id/status", async (request) => {
    const entry = find(request.params.id);
    const status = lifecycle.status(entry.id);
    return {
      id: entry.id,
      status: publicStatus(status),
      port: status.port ?? null,
      uptime: status.readySince === undefined ? 0 : Math.floor((Date.now() - status.readySince) / 1000),
      memory_usage: status.memoryBytes ?? 0,
      last_used: iso(status.lastUsed),
      in_flight: status.inFlight,
      expires_at: iso(status.expiresAt),
      ...(status.error ? { error: status.error } : {}),
    };
  });

  app.post<{ Params: { id: string } }>("/v1/models/:id/start", async (request) => {
    const entry = find(request.params.id);
    const before = lifecycle.status(entry.id);
    if (before.state !== "ready") {
      // Loading continues in the background; the status endpoint follows it.
      lifecycle.start(entry).catch((error: unknown) => request.log.warn({ model: entry.id, err: (error as Error).message }, "start failed"));
    }
    const after = lifecycle.status(entry.id);
    return { success: true, port: after.port ?? null, status: before.state === "ready" ? "loaded" : "starting" };
  });

  app.post<{ Params: { id: string } }>("/v1/models/:id/stop", async (request) => {
    const entry = find(request.params.id);
    const before = lifecycle.status(entry.id);
    lifecycle.stop(entry.id);
    const draining = before.state === "ready" && before.inFlight > 0;
    return { success: true, status: draining ? "stopping" : "stopped" };
  });

  app.get<{ Params: { id: string } }>("/v1/models/:id/info", async (request) => {
    const entry = find(request.params.id);
    const status = lifecycle.status(entry.id);
    return {
      id: entry.id,
      // The full path only for a client that proved a key; anyone else learns the file name, not the folders.
      path: request.authenticated ? (entry.path ?? entry.url ?? null) : entry.path ? basename(entry.path) : null,
      size: entry.gguf?.sizeBytes ?? 0,
      parameters: entry.gguf?.parameterCount ?? 0,
      format: entry.gguf ? "GGUF" : null,
      architecture: entry.gguf?.architecture ?? null,
      context_length: entry.gguf?.contextLength ?? null,
      quantization: entry.gguf?.quantization ?? null,
      runtime: entry.runtime,
      aliases: entry.aliases,
      loaded: status.state === "ready",
      port: status.port ?? null,
      ...(entry.error ? { error: entry.error } : {}),
    };
  });

  app.get("/v1/system/status", async () => {
    const statuses = catalog.entries.map((e) => lifecycle.status(e.id));
    const loaded = statuses.filter((s) => s.state === "ready");
    return {
      status: "running",
      models: {
        total: catalog.size,
        loaded: loaded.length,
        memory_usage: loaded.reduce((sum, s) => sum + (s.memoryBytes ?? 0), 0),
      },
      proxies: proxies(),
      system: { cpu_usage: await cpu.usagePercent(), ...memoryFigures() },
    };
  });

  app.get("/v1/server/info", async () => ({
    id: "llama-runner",
    version,
    description: "LlamaRunner - local AI gateway (OpenAI, Ollama and LM Studio APIs)",
    features: ["chat", "completions", "embeddings", "streaming", "model-management"],
    models_supported: ["gguf"],
    runtime_info: { node_version: process.versions.node, platform: process.platform, arch: process.arch },
  }));
}
