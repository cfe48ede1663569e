/**
 * The OpenAI wire format as our backends speak it (llama.cpp's llama-server flavour). Both the
 * gateway's OpenAI dialect (to validate and route) and the embedded runner (to serve) parse requests
 * with these schemas, so a request the gateway accepts is one the runner understands.
 * Unknown fields pass through untouched: clients send many we do not use, and a real llama-server
 * upstream may understand them.
 */
import { z } from "zod";

const stopSchema = z.union([z.string(), z.array(z.string()).max(16)]).nullish();

const finiteNumber = z.number().finite();

export const textPartSchema = z.looseObject({ type: z.literal("text"), text: z.string() });
export const imagePartSchema = z.looseObject({
  type: z.literal("image_url"),
  image_url: z.union([z.string(), z.looseObject({ url: z.string() })]),
});
export const contentPartSchema = z.union([textPartSchema, imagePartSchema, z.looseObject({ type: z.string() })]);

export const toolCallSchema = z.looseObject({
  id: z.string().optional(),
  type: z.literal("function").optional(),
  function: z.looseObject({ name: z.string(), arguments: z.string() }),
});

export const chatMessageSchema = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
  content: z.union([z.string(), z.array(contentPartSchema)]).nullish(),
  name: z.string().optional(),
  tool_calls: z.array(toolCallSchema).optional(),
  tool_call_id: z.string().optional(),
});

export const toolSchema = z.looseObject({
  type: z.literal("function"),
  function: z.looseObject({
    name: z.string().min(1),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});

export const toolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.looseObject({ type: z.literal("function"), function: z.looseObject({ name: z.string() }) }),
]);

export const responseFormatSchema = z.union([
  z.looseObject({ type: z.literal("text") }),
  z.looseObject({ type: z.literal("json_object"), schema: z.record(z.string(), z.unknown()).optional() }),
  z.looseObject({
    type: z.literal("json_schema"),
    json_schema: z.looseObject({
      name: z.string().optional(),
      strict: z.boolean().nullish(),
      schema: z.record(z.string(), z.unknown()).optional(),
    }),
  }),
]);

const samplingFields = {
  model: z.string().min(1),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
  max_tokens: z.number().int().min(-1).nullish(),
  temperature: finiteNumber.min(0).max(2).nullish(),
  top_p: finiteNumber.min(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  min_p: finiteNumber.min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop: stopSchema,
  presence_penalty: finiteNumber.min(-2).max(2).nullish(),
  frequency_penalty: finiteNumber.min(-2).max(2).nullish(),
  repeat_penalty: finiteNumber.min(0).nullish(),
  n: z.number().int().min(1).max(1, "only n=1 is supported").nullish(),
  user: z.string().nullish(),
};

export const chatCompletionRequestSchema = z.looseObject({
  ...samplingFields,
  messages: z.array(chatMessageSchema).min(1, "messages must contain at least one message"),
  max_completion_tokens: z.number().int().min(-1).nullish(),
  response_format: responseFormatSchema.nullish(),
  tools: z.array(toolSchema).nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
});
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;
export type ChatMessage = z.infer<typeof chatMessageSchema>;

export const completionRequestSchema = z.looseObject({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number().int()).min(1)]),
  suffix: z.string().nullish(),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(5).nullish(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

export const embeddingRequestSchema = z.looseObject({
  model: z.string().min(1),
  input: z.union([
    z.string(),
    z.array(z.string()).min(1),
    z.array(z.number().int()).min(1),
    z.array(z.array(z.number().int()).min(1)).min(1),
  ]),
  encoding_format: z.enum(["float", "base64"]).nullish(),
  dimensions: z.number().int().min(1).nullish(),
  user: z.string().nullish(),
});
export type EmbeddingRequest = z.infer<typeof embeddingRequestSchema>;

/** The part of a request every endpoint shares: enough to route it to a model. */
export const routableRequestSchema = z.looseObject({ model: z.string().min(1) });

export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** llama-server's per-request timings, in milliseconds; dialects derive Ollama and LM Studio stats from them. */
export interface Timings {
  prompt_n: number;
  prompt_ms: number;
  prompt_per_second: number;
  predicted_n: number;
  predicted_ms: number;
  predicted_per_second: number;
}

export interface ChatCompletionToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ChatCompletionResponse {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    message: { role: "assistant"; content: string | null; refusal: null; tool_calls?: ChatCompletionToolCall[] };
    logprobs: null;
    finish_reason: FinishReason;
  }>;
  usage: Usage;
  timings?: Timings;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    delta: {
      role?: "assistant";
      content?: string | null;
      tool_calls?: Array<{ index: number; id?: string; type?: "function"; function: { name?: string; arguments: string } }>;
    };
    logprobs: null;
    finish_reason: FinishReason | null;
  }>;
  usage?: Usage;
  timings?: Timings;
}

export interface CompletionResponse {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{ text: string; index: number; logprobs: null; finish_reason: FinishReason | null }>;
  usage?: Usage;
  timings?: Timings;
}

export interface EmbeddingResponse {
  object: "list";
  data: Array<{ object: "embedding"; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** Turns zod issues into one readable sentence that names each bad field. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.length > 0 ? issue.path.join(".") : "body";
      return `${path}: ${issue.message}`;
    })
    .join("; ");
}
