/**
 * What `tools` and `tool_choice` ask of a chat completion. "auto" uses node-llama-cpp's function calling in
 * the chat template's own syntax. "required" and a named function force a call with a grammar, as
 * llama-server does: the arguments are generated under a grammar built from the parameters schema, so even
 * a model that was never trained for tools returns a valid call.
 */
import { randomBytes } from "node:crypto";
import type { ChatHistoryItem, ChatModelFunctions, LlamaGrammar } from "node-llama-cpp";
import type { ChatCompletionRequest } from "../protocol/openai.js";
import type { Engine } from "./engine.js";
import { badRequest } from "./errors.js";
import { convertSchema, grammarForResponseFormat, grammarForSchema } from "./grammar.js";

export type ToolMode =
  | { kind: "none" }
  /** The model decides, through node-llama-cpp's function calling in the chat template's own syntax. */
  | { kind: "auto"; functions: ChatModelFunctions; maxParallelCalls: number | undefined }
  /** One function must be called: its arguments are generated under a grammar from its parameters schema. */
  | { kind: "forced"; name: string }
  /** Some function must be called: the grammar allows `{"name": …, "arguments": …}` for each tool. */
  | { kind: "forced-any" };

type Tool = NonNullable<ChatCompletionRequest["tools"]>[number];

const emptyParameters = { type: "object", properties: {}, additionalProperties: false };

export function newToolCallId(): string {
  return `call_${randomBytes(12).toString("hex")}`;
}

/** Forced calls do not use the template's tool syntax, so the model is told in words what to produce. */
function withInstruction(history: ChatHistoryItem[], instruction: string): ChatHistoryItem[] {
  const first = history[0];
  if (first?.type === "system" && typeof first.text === "string") {
    return [{ type: "system", text: `${first.text}\n\n${instruction}` }, ...history.slice(1)];
  }
  return [{ type: "system", text: instruction }, ...history];
}

function describeTool(tool: Tool): string {
  const { name, description, parameters } = tool.function;
  return `- ${name}${description ? `: ${description}` : ""}\n  parameters: ${JSON.stringify(parameters ?? emptyParameters)}`;
}

/**
 * Decides how this request generates: the tool mode, the grammar (a forced call's, or `response_format`'s
 * when no tool is involved) and the history the model sees (forced calls add an instruction to it).
 */
export async function resolveTools(
  engine: Engine,
  request: ChatCompletionRequest,
  history: ChatHistoryItem[],
): Promise<{ tools: ToolMode; grammar: LlamaGrammar | undefined; history: ChatHistoryItem[] }> {
  const tools = request.tools ?? [];
  const choice = request.tool_choice ?? (tools.length > 0 ? "auto" : "none");
  if (choice === "none" || (tools.length === 0 && choice === "auto")) {
    return { tools: { kind: "none" }, grammar: await grammarForResponseFormat(engine, request.response_format), history };
  }
  if (tools.length === 0) throw badRequest("tool_choice requires a non-empty 'tools' list", "tool_choice");

  if (choice === "auto") {
    if (request.response_format != null && request.response_format.type !== "text") {
      throw badRequest("response_format cannot be combined with tools when tool_choice is 'auto'", "response_format");
    }
    const functions: Record<string, ChatModelFunctions[string]> = {};
    tools.forEach((tool, i) => {
      const { name, description, parameters } = tool.function;
      functions[name] = {
        ...(description === undefined ? {} : { description }),
        ...(parameters === undefined ? {} : { params: convertSchema(parameters, `tools.${i}.function.parameters`) }),
      };
    });
    return {
      tools: { kind: "auto", functions, maxParallelCalls: request.parallel_tool_calls === false ? 1 : undefined },
      grammar: undefined,
      history,
    };
  }

  const named = typeof choice === "object" ? choice.function.name : undefined;
  const chosen = named === undefined ? (tools.length === 1 ? tools[0] : undefined) : tools.find((t) => t.function.name === named);
  if (named !== undefined && chosen === undefined) {
    throw badRequest(`tool_choice names the function '${named}', which is not in 'tools'`, "tool_choice");
  }
  if (chosen !== undefined) {
    const index = tools.indexOf(chosen);
    const param = `tools.${index}.function.parameters`;
    const schema = convertSchema(chosen.function.parameters ?? emptyParameters, param);
    const instruction =
      `Call the function "${chosen.function.name}" now. Reply with only its arguments as one JSON object.\n` +
      `Function:\n${describeTool(chosen)}`;
    return {
      tools: { kind: "forced", name: chosen.function.name },
      grammar: await grammarForSchema(engine, schema, param),
      history: withInstruction(history, instruction),
    };
  }
  const schema = {
    oneOf: tools.map((tool, i) => ({
      type: "object",
      properties: {
        name: { const: tool.function.name },
        arguments: convertSchema(tool.function.parameters ?? emptyParameters, `tools.${i}.function.parameters`),
      },
      additionalProperties: false,
    })),
  };
  const instruction =
    `Call one of these functions now. Reply with only one JSON object: {"name": <function name>, "arguments": <its arguments>}.\n` +
    `Functions:\n${tools.map(describeTool).join("\n")}`;
  return {
    tools: { kind: "forced-any" },
    grammar: await grammarForSchema(engine, schema as Parameters<typeof grammarForSchema>[1], "tools"),
    history: withInstruction(history, instruction),
  };
}

