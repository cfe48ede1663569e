/**
 * Ollama request bodies (api/types.go), validated loosely: unknown fields are ignored, as Ollama's JSON
 * binding does. Every request takes the model as `model` or the legacy `name`.
 */
import { z } from "zod";
import { GatewayError } from "../../errors/index.js";
import { describeIssues } from "../../protocol/openai.js";
import { missingModel } from "./errors.js";

const nameFields = { model: z.string().nullish(), name: z.string().nullish() };
const keepAlive = z.union([z.number(), z.string()]).nullish();
const options = z.record(z.string(), z.unknown()).nullish();
/** "json", a JSON schema object, or empty. */
const format = z.union([z.string(), z.record(z.string(), z.unknown())]).nullish();
/** true/false or a level ("low", "medium", "high"). */
const think = z.union([z.boolean(), z.string()]).nullish();

export const toolCallSchema = z.looseObject({
  id: z.string().nullish(),
  function: z.looseObject({
    index: z.number().nullish(),
    name: z.string(),
    arguments: z.union([z.record(z.string(), z.unknown()), z.string()]).nullish(),
  }),
});

export const messageSchema = z.looseObject({
  role: z.string().min(1),
  content: z.string().nullish(),
  images: z.array(z.string()).nullish(),
  thinking: z.string().nullish(),
  tool_calls: z.array(toolCallSchema).nullish(),
  tool_name: z.string().nullish(),
  tool_call_id: z.string().nullish(),
});
export type OllamaMessage = z.infer<typeof messageSchema>;

export const toolSchema = z.looseObject({
  type: z.string().nullish(),
  function: z.looseObject({
    name: z.string().min(1),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
  }),
});

/** What chat and generate share: how to generate, stream and keep the model. */
const generationFields = {
  ...nameFields,
  format,
  options,
  stream: z.boolean().nullish(),
  keep_alive: keepAlive,
  think,
};

export const chatRequestSchema = z.looseObject({
  ...generationFields,
  messages: z.array(messageSchema).nullish(),
  tools: z.array(toolSchema).nullish(),
});
export type OllamaChatRequest = z.infer<typeof chatRequestSchema>;

export const generateRequestSchema = z.looseObject({
  ...generationFields,
  prompt: z.string().nullish(),
  suffix: z.string().nullish(),
  images: z.array(z.string()).nullish(),
  system: z.string().nullish(),
  template: z.string().nullish(),
  context: z.array(z.number().int().nonnegative()).nullish(),
  raw: z.boolean().nullish(),
});
export type OllamaGenerateRequest = z.infer<typeof generateRequestSchema>;

export const embedRequestSchema = z.looseObject({
  ...nameFields,
  input: z.union([z.string(), z.array(z.string())]).nullish(),
  truncate: z.boolean().nullish(),
  dimensions: z.number().int().min(1).nullish(),
  options,
  keep_alive: keepAlive,
});

export const embeddingsRequestSchema = z.looseObject({ ...nameFields, prompt: z.string().nullish(), options, keep_alive: keepAlive });

export const showRequestSchema = z.looseObject({ ...nameFields, verbose: z.boolean().nullish() });

export const copyRequestSchema = z.looseObject({ source: z.string(), destination: z.string() });

export const modelRequestSchema = z.looseObject({ ...nameFields, stream: z.boolean().nullish(), insecure: z.boolean().nullish() });

/** Ollama's answers: "missing request body", then the first bad field. */
export function parseOllama<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (body === undefined || body === null) throw new GatewayError("invalid_request", "missing request body");
  if (typeof body !== "object" || Array.isArray(body)) throw new GatewayError("invalid_request", "request body must be a JSON object");
  const result = schema.safeParse(body);
  if (!result.success) throw new GatewayError("invalid_request", describeIssues(result.error));
  return result.data;
}

/** `model`, else the legacy `name`; 400 "model is required" when neither is given. */
export function modelName(body: { model?: string | null; name?: string | null }): string {
  const name = (body.model ?? "").trim() || (body.name ?? "").trim();
  if (name === "") throw missingModel();
  return name;
}
