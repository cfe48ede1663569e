/**
 * The one config schema: defaults, types and validation. Keys keep the names of the original
 * llama-runner `config.json` so existing files load unchanged.
 */
import { z } from "zod";

// 0 asks the OS for a free port (handy for tests and side-by-side instances).
const port = z.number().int().min(0).max(65535);

const listenerSchema = (defaultPort: number) =>
  z.strictObject({
    enabled: z.boolean().default(true),
    port: port.default(defaultPort),
    host: z.string().min(1).default("127.0.0.1"),
  });

/** Backend parameters stay open-ended: each backend maps the ones it knows and warns about the rest. */
const parametersSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]));

export const modelConfigSchema = z.strictObject({
  model_path: z.string().min(1),
  /** The model name sent upstream, when the backend knows the model by another name. */
  model_id: z.string().min(1).optional(),
  aliases: z.array(z.string().min(1)).default([]),
  runtime: z.string().min(1).optional(),
  parameters: parametersSchema.default({}),
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
  /** Folder searched (recursively) for `*.gguf` files; relative to the config file. */
  models_dir: z.string().min(1).default("models"),
  proxies: z
    .strictObject({
      ollama: listenerSchema(11434).default({ enabled: true, port: 11434, host: "127.0.0.1" }),
      lmstudio: listenerSchema(1234).default({ enabled: true, port: 1234, host: "127.0.0.1" }),
    })
    .default({
      ollama: { enabled: true, port: 11434, host: "127.0.0.1" },
      lmstudio: { enabled: true, port: 1234, host: "127.0.0.1" },
    }),
  runner: z
    .strictObject({
      /** Seconds a backend may take from spawn to a healthy /health before it is an error. */
      load_timeout_s: z.number().positive().default(120),
      /** Seconds between SIGTERM and SIGKILL when a backend is stopped. */
      stop_grace_s: z.number().positive().default(5),
    })
    .default({ load_timeout_s: 120, stop_grace_s: 5 }),
  /** Create and serve a tiny random-weight demo model when no model is configured or discovered. */
  demo_model: z.boolean().default(true),
}).superRefine((config, ctx) => {
  // A typo in a runtime name should stop start-up, not surface as a failed load hours later.
  const known = ["embedded", ...Object.keys(config["llama-runtimes"])];
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
