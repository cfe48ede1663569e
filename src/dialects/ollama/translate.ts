/**
 * Ollama requests → the OpenAI bodies our backends take (llama-server's flavour). Pure functions: the
 * routes send the result through the gateway's one request path.
 *
 * - `options` → sampling fields; `num_predict` → `max_tokens`; `num_ctx` cannot change a loaded backend's
 *   context and is ignored (the context is the model's `ctx_size`).
 * - `format` "json" → `response_format: json_object`; a schema → `json_schema`.
 * - `images` (raw base64) → `image_url` parts with a data URL.
 * - tool call `arguments`: an object on Ollama, a JSON string on OpenAI.
 * - `think` → `chat_template_kwargs.enable_thinking` (and `reasoning_effort` for a level), which
 *   llama-server's Jinja templates read; backends that do not know it ignore it.
 */
import type { ModelEntry } from "../../catalog/catalog.js";
import { invalidRequest } from "../../errors/index.js";
import { fimFormat, fimPrompt } from "./model-info.js";
import type { OllamaChatRequest, OllamaGenerateRequest, OllamaMessage } from "./schemas.js";

type Body = { model: string } & Record<string, unknown>;

const NUMBER_OPTIONS: Record<string, string> = {
  temperature: "temperature",
  top_p: "top_p",
  top_k: "top_k",
  min_p: "min_p",
  seed: "seed",
  repeat_penalty: "repeat_penalty",
  presence_penalty: "presence_penalty",
  frequency_penalty: "frequency_penalty",
  typical_p: "typical_p",
  repeat_last_n: "repeat_last_n",
};

/** Ollama `options` → OpenAI/llama-server sampling fields. Unknown options are ignored, as Ollama does. */
export function samplingFromOptions(options: Record<string, unknown> | null | undefined, endpoint: "chat" | "completions"): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const opts = options ?? {};
  for (const [option, field] of Object.entries(NUMBER_OPTIONS)) {
    const value = opts[option];
    if (value === undefined || value === null) continue;
    if (typeof value !== "number" || !Number.isFinite(value)) throw invalidRequest(`options.${option}: expected a number, got ${JSON.stringify(value)}`, `options.${option}`);
    out[field] = value;
  }
  const stop = opts["stop"];
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === "string" ? [stop] : stop;
    if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) throw invalidRequest("options.stop: expected a list of strings", "options.stop");
    if (list.length > 0) out["stop"] = list;
  }
  const numPredict = opts["num_predict"];
  if (numPredict !== undefined && numPredict !== null) {
    if (typeof numPredict !== "number" || !Number.isInteger(numPredict)) throw invalidRequest("options.num_predict: expected an integer", "options.num_predict");
    if (numPredict >= 0) out["max_tokens"] = numPredict;
  }
  // Ollama's default is "until the context is full"; the legacy completions endpoint would stop at 16.
  if (endpoint === "completions" && out["max_tokens"] === undefined) out["max_tokens"] = -1;
  return out;
}

/** `format`: "json" or a JSON schema; "" and null mean free text. */
export function responseFormat(format: OllamaChatRequest["format"]): Record<string, unknown> | undefined {
  if (format === undefined || format === null || format === "") return undefined;
  if (typeof format === "string") {
    if (format === "json") return { type: "json_object" };
    throw invalidRequest(`format: expected "json" or a JSON schema, got ${JSON.stringify(format)}`, "format");
  }
  return { type: "json_schema", json_schema: { name: "format", schema: format } };
}

export function thinkFields(think: OllamaChatRequest["think"]): Record<string, unknown> {
  if (think === undefined || think === null) return {};
  if (typeof think === "boolean") return { chat_template_kwargs: { enable_thinking: think } };
  const level = think.toLowerCase();
  if (level === "true" || level === "false") return { chat_template_kwargs: { enable_thinking: level === "true" } };
  return { chat_template_kwargs: { enable_thinking: true, reasoning_effort: level } };
}

function imageMime(base64: string): string {
  if (base64.startsWith("iVBORw0KGgo")) return "image/png";
  if (base64.startsWith("/9j/")) return "image/jpeg";
  if (base64.startsWith("R0lGOD")) return "image/gif";
  if (base64.startsWith("UklGR")) return "image/webp";
  if (base64.startsWith("Qk")) return "image/bmp";
  return "image/jpeg";
}

/** An Ollama image (raw base64, or already a data URL) as an OpenAI content part. */
export function imagePart(image: string): { type: "image_url"; image_url: { url: string } } {
  const url = image.startsWith("data:") ? image : `data:${imageMime(image)};base64,${image}`;
  return { type: "image_url", image_url: { url } };
}

function content(text: string | null | undefined, images: readonly string[] | null | undefined): string | Array<Record<string, unknown>> {
  if (!images || images.length === 0) return text ?? "";
  return [{ type: "text", text: text ?? "" }, ...images.map(imagePart)];
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool", "function"]);

/** Ollama messages → OpenAI messages; tool results are linked to the calls they answer by id or name. */
export function toOpenAIMessages(messages: readonly OllamaMessage[]): Array<Record<string, unknown>> {
  const unanswered: Array<{ id: string; name: string }> = [];
  let nextId = 0;
  return messages.map((message, i) => {
    if (!ROLES.has(message.role)) throw invalidRequest(`messages.${i}.role: unknown role ${JSON.stringify(message.role)}`, `messages.${i}.role`);
    if (message.role === "assistant") {
      const calls = (message.tool_calls ?? []).map((call) => {
        const id = call.id ?? `call_${i}_${nextId++}`;
        unanswered.push({ id, name: call.function.name });
        const args = call.function.arguments;
        return { id, type: "function", function: { name: call.function.name, arguments: typeof args === "string" ? args : JSON.stringify(args ?? {}) } };
      });
      return {
        role: "assistant",
        content: calls.length > 0 && !message.content ? null : (message.content ?? ""),
        ...(calls.length > 0 ? { tool_calls: calls } : {}),
        ...(message.thinking ? { reasoning_content: message.thinking } : {}),
      };
    }
    if (message.role === "tool" || message.role === "function") {
      const byId = message.tool_call_id ? unanswered.findIndex((c) => c.id === message.tool_call_id) : -1;
      const byName = byId < 0 && message.tool_name ? unanswered.findIndex((c) => c.name === message.tool_name) : -1;
      const index = byId >= 0 ? byId : byName >= 0 ? byName : unanswered.length > 0 ? 0 : -1;
      const call = index >= 0 ? unanswered.splice(index, 1)[0] : undefined;
      const toolCallId = message.tool_call_id ?? call?.id;
      const name = message.tool_name ?? call?.name;
      return { role: "tool", content: message.content ?? "", ...(toolCallId ? { tool_call_id: toolCallId } : {}), ...(name ? { name } : {}) };
    }
    return { role: message.role, content: content(message.content, message.images) };
  });
}

function tools(request: OllamaChatRequest): Record<string, unknown> {
  if (!request.tools || request.tools.length === 0) return {};
  return {
    tools: request.tools.map((tool) => ({
      type: "function",
      function: {
        name: tool.function.name,
        ...(tool.function.description ? { description: tool.function.description } : {}),
        ...(tool.function.parameters ? { parameters: tool.function.parameters } : {}),
      },
    })),
  };
}

/** Always streamed upstream: the stream's start tells when the model was ready, and it carries the timings. */
const streamed = { stream: true, stream_options: { include_usage: true } };

/** `name` is the client's: it resolves to the same entry, and a copy keeps working after its source is deleted. */
export function chatBody(name: string, request: OllamaChatRequest): Body {
  const format = responseFormat(request.format);
  return {
    model: name,
    messages: toOpenAIMessages(request.messages ?? []),
    ...tools(request),
    ...samplingFromOptions(request.options, "chat"),
    ...(format ? { response_format: format } : {}),
    ...thinkFields(request.think),
    ...streamed,
  };
}

/** What `/api/generate` sends upstream. */
export interface GeneratePlan {
  endpoint: "chat" | "completions";
  body: Body;
  /** The chat turn to render with the model's template (templated generate), for `context`. */
  turn?: { messages: Array<Record<string, unknown>> } & Record<string, unknown>;
}

/**
 * `/api/generate` → chat (the model's template applies `system` and the prompt), or a raw completion for
 * `raw: true` and for fill-in-the-middle (`suffix`), whose prompt is built from the model's FIM tokens.
 * `template` is not supported: the model's own template is always used. A `context` is continued by the
 * route (context.ts), which renders `turn` and sends it through `continuation`.
 */
export function generateBody(entry: ModelEntry, request: OllamaGenerateRequest, name: string): GeneratePlan {
  const prompt = request.prompt ?? "";
  if (request.raw === true && (request.system || request.template || (request.context?.length ?? 0) > 0)) {
    throw invalidRequest("raw mode does not support template, system, or context");
  }
  if (request.suffix) {
    const fim = fimFormat(entry);
    if (!fim) throw invalidRequest(`${JSON.stringify(name)} does not support insert`);
    return continuation(name, request, fimPrompt(fim, prompt, request.suffix));
  }
  if (request.raw === true) {
    if (request.images && request.images.length > 0) throw invalidRequest("images are not supported with raw prompts here; send them without raw");
    return continuation(name, request, prompt);
  }
  const messages: Array<Record<string, unknown>> = [];
  if (request.system) messages.push({ role: "system", content: request.system });
  messages.push({ role: "user", content: content(prompt, request.images) });
  const format = responseFormat(request.format);
  const think = thinkFields(request.think);
  return {
    endpoint: "chat",
    body: { model: name, messages, ...samplingFromOptions(request.options, "chat"), ...(format ? { response_format: format } : {}), ...think, ...streamed },
    turn: { messages, ...think },
  };
}

/** A raw completion of `prompt` (already rendered: text, or tokens) with the request's sampling and format. */
export function continuation(name: string, request: OllamaGenerateRequest, prompt: string | number[]): GeneratePlan {
  const format = responseFormat(request.format);
  return {
    endpoint: "completions",
    body: { model: name, prompt, ...samplingFromOptions(request.options, "completions"), ...(format ? { response_format: format } : {}), ...streamed },
  };
}
