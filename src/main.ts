/**
 * Wiring only: config → catalog → lifecycle → gateway. `buildApp` builds everything without
 * listening, so tests and the CLI share one assembly.
 */
import { dirname, join } from "node:path";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { describeAudioModels } from "./audio/models.js";
import { AudioService } from "./audio/service.js";
import { Catalog } from "./catalog/catalog.js";
import { CatalogEdits } from "./catalog/edits.js";
import { ensureTinyLlamaGguf } from "./catalog/demo/tiny-llama.js";
import { ConfigError, loadConfig } from "./config/load.js";
import type { Config, ListenerName } from "./config/schema.js";
import { EventBus } from "./events/bus.js";
import { IdleHeapCollector } from "./gateway/idle-heap.js";
import { InferenceService } from "./gateway/inference.js";
import { LogHub } from "./gateway/logs/hub.js";
import { GatewayMetrics } from "./gateway/metrics/metrics.js";
import { buildListener } from "./gateway/server.js";
import { WebhookService } from "./gateway/webhooks/service.js";
import { Lifecycle } from "./lifecycle/lifecycle.js";
import { createLogger, teeLogger } from "./logger.js";
import { UpstreamClient } from "./upstream/client.js";
import { VERSION } from "./version.js";

export const DEMO_MODEL_ID = "llama-runner-demo";

const isLoopbackHost = (host: string) => host === "localhost" || host === "::1" || host.startsWith("127.");

export interface AppOptions {
  configFile: string;
  home: string;
  logger?: Logger;
  /** Where LLAMA_RUNNER_API_KEYS is read from (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface App {
  config: Config;
  catalog: Catalog;
  lifecycle: Lifecycle;
  bus: EventBus;
  audio: AudioService;
  webhooks: WebhookService;
  metrics: GatewayMetrics;
  logs: LogHub;
  idleHeap: IdleHeapCollector;
  listeners: Map<ListenerName, FastifyInstance>;
  /** Starts every enabled listener; returns the address each one bound. */
  listen(): Promise<Map<ListenerName, { host: string; port: number }>>;
  /** Closes the listeners and stops every backend process. */
  close(): Promise<void>;
}

export async function buildApp({ configFile, home, logger = createLogger(), env = process.env }: AppOptions): Promise<App> {
  const loaded = await loadConfig(configFile);
  // Every log line also goes to the ring behind GET /logs (src/gateway/logs); backends by catalogue id.
  let catalogRef: Catalog | undefined;
  const logs = new LogHub({ capacity: loaded.config.logs.buffer_lines, backendSource: (model) => catalogRef?.resolve(model)?.id });
  logger = teeLogger(logger, logs.gatewaySink());
  if (loaded.created) logger.info({ file: configFile }, "created a default config");
  for (const warning of loaded.warnings) logger.warn({ file: configFile }, warning);
  const { config } = loaded;

  const configDir = dirname(configFile);
  // Whisper models join the catalogue as `command` entries that run our whisper runner (src/audio/models.ts).
  const audioModels = await describeAudioModels(config, configDir);
  if (audioModels.problems.length > 0) throw new ConfigError(configFile, audioModels.problems);
  const catalogConfig = { ...config, models: { ...config.models, ...audioModels.catalogConfigs } };
  const { edits, problem } = CatalogEdits.load(join(home, "catalog-edits.json"));
  if (problem) logger.warn(problem);
  let catalog = await Catalog.build({ config: catalogConfig, configDir, edits });
  if (catalog.size === 0 && config.demo_model) {
    const path = await ensureTinyLlamaGguf(join(home, "demo"), { name: "llama-runner demo (random weights)" });
    catalog = await Catalog.build({ config: catalogConfig, configDir, edits, extra: [{ id: DEMO_MODEL_ID, path, source: "demo" }] });
    logger.warn(
      `no models configured or found in models_dir: serving '${DEMO_MODEL_ID}', a tiny model with RANDOM weights ` +
        `(it answers gibberish; it is there to try the API). Add models to ${configFile}.`,
    );
  }
  for (const entry of catalog.entries.filter((e) => e.error)) logger.error({ model: entry.id }, entry.error);
  catalogRef = catalog;

  const bus = new EventBus();
  const lifecycle = new Lifecycle({ config, catalog, bus, logger });
  const metrics = new GatewayMetrics({ bus, catalog, lifecycle, processMetrics: config.metrics.process_metrics });
  const upstream = new UpstreamClient(metrics.upstreamObserver);
  const inference = new InferenceService(catalog, lifecycle, upstream, new Set(Object.keys(audioModels.catalogConfigs)));
  const audio = await AudioService.create({ config: config.audio, configDir, catalog, lifecycle, bus, logger, models: audioModels.models });
  if (!(audio instanceof AudioService)) {
    metrics.close();
    await lifecycle.close();
    throw new ConfigError(configFile, audio.problems);
  }
  const webhooks: WebhookService = new WebhookService({
    home,
    bus,
    logger,
    config: config.webhooks,
    version: VERSION,
    observer: metrics.webhookObserver((): number => webhooks.pendingTotal()),
  });
  webhooks.start();
  logs.start();
  const idleHeap = new IdleHeapCollector({ idleMs: config.heap.idle_collect_s * 1000, busy: () => lifecycle.busy(), logger });
  const listeners = new Map<ListenerName, FastifyInstance>();
  const bound = new Map<ListenerName, { host: string; port: number }>();
  const proxies = () =>
    Object.fromEntries(
      (["ollama", "lmstudio"] as const).map((name) => {
        const listening = bound.get(name);
        const status = !config.proxies[name].enabled ? "disabled" : listening ? "running" : "stopped";
        return [name, { status, port: listening?.port ?? config.proxies[name].port }] as const;
      }),
    );
  const apiKeys = [...config.api_keys, ...(env["LLAMA_RUNNER_API_KEYS"] ?? "").split(",").map((k) => k.trim()).filter(Boolean)];
  const deps = { config, apiKeys, catalog, lifecycle, inference, logger, version: VERSION, startedAt: Date.now(), proxies, audio, events: { bus, webhooks, metrics, logs } };

  for (const name of ["lmstudio", "ollama"] as const) {
    if (config.proxies[name].enabled) listeners.set(name, buildListener(name, deps));
  }

  return {
    config,
    catalog,
    lifecycle,
    bus,
    audio,
    webhooks,
    metrics,
    logs,
    idleHeap,
    listeners,
    async listen() {
      for (const [name, app] of listeners) {
        const { host, port } = config.proxies[name];
        if (apiKeys.length === 0 && !isLoopbackHost(host)) {
          logger.warn(
            `!!! ${name} listens on ${host}, reachable from other machines, and NO API KEY is configured: ` +
              "anyone who can reach it can use and stop your models. Set api_keys in the config or LLAMA_RUNNER_API_KEYS.",
          );
        }
        await app.listen({ host, port });
        const address = app.server.address();
        bound.set(name, { host, port: typeof address === "object" && address ? address.port : port });
      }
      for (const entry of catalog.entries.filter((e) => e.preload)) {
        lifecycle.start(entry).catch((error: unknown) => logger.error({ model: entry.id, err: (error as Error).message }, "preload failed"));
      }
      return bound;
    },
    async close() {
      bound.clear();
      await Promise.all([...listeners.values()].map((app) => app.close()));
      await lifecycle.close();
      await upstream.close();
      await audio.close();
      // Last: events published while stopping (model.stopped "shutdown") are queued for delivery after a restart.
      await webhooks.close();
      metrics.close();
      logs.close();
      idleHeap.close();
    },
  };
}
