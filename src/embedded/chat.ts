/**
 * One chat completion, independent of HTTP: `prepareChat` validates and renders the request (every client
 * error surfaces here, before a sequence is taken or a byte is streamed), `runChat` generates on a leased
 * sequence and reports text and tool calls through events as they are produced.
 */
import {
  LlamaChat,
  type ChatHistoryItem,
  type ChatModelFunctions,
  type LlamaChatResponse,
  type LlamaContextSequence,
  type LlamaGrammar,
  type Token,
} from "node-llama-cpp";
import type {
  ChatCompletionRequest,
  ChatCompletionToolCall,
  FinishReason,
  Timings,
  Usage,
} from "../protocol/openai.js";
import { toChatHistory } from "./chat-history.js";
import type { Engine } from "./engine.js";
import { badRequest, contextLengthExceeded } from "./errors.js";
import { GenerationClock } from "./timings.js";
import { beginningToken } from "./tokens.js";
import { newToolCallId, resolveTools, type ToolMode } from "./tool-choice.js";
import { generationBudget, samplingFrom, stopTriggers, type Sampling } from "./sampling.js";

export interface ChatEvents {
  content(text: string): void;
  /** A tool call begins; its arguments follow through `toolCallArguments`. */
  toolCallStart(index: number, id: string, name: string): void;
  toolCallArguments(index: number, fragment: string): void;
}

export interface ChatResult {
  content: string;
  toolCalls: ChatCompletionToolCall[];
  finishReason: FinishReason;
  usage: Usage;
  timings: Timings;
}

export interface ChatJob {
  history: ChatHistoryItem[];
  tools: ToolMode;
  grammar: LlamaGrammar | undefined;
  stop: string[];
  sampling: Sampling;
  maxTokens: number;
  promptTokens: number;
}

/** The prompt exactly as node-llama-cpp will evaluate it, as tokens. */
function renderPrompt(engine: Engine, history: ChatHistoryItem[], functions: ChatModelFunctions | undefined): Token[] {
  const open: ChatHistoryItem[] = history.at(-1)?.type === "model" ? history : [...history, { type: "model", response: [] }];
  let rendered;
  try {
    rendered = engine.chatWrapper.generateContextState({
      chatHistory: open,
      ...(functions === undefined ? {} : { availableFunctions: functions }),
      documentFunctionParams: true,
    });
  } catch (error) {
    // Jinja templates raise on histories they do not accept (e.g. roles that do not alternate).
    throw badRequest(`the chat template rejected these messages: ${error instanceof Error ? error.message : String(error)}`, "messages");
  }
  return rendered.contextText.tokenize(engine.model.tokenizer);
}

/**
 * llama-server's `/apply-template`: the chat prompt as text, ready for a raw completion. Without the BOS
 * token, which a completion adds itself when it tokenizes the prompt.
 */
export async function templatePrompt(engine: Engine, request: ChatCompletionRequest): Promise<string> {
  const resolved = await resolveTools(engine, request, toChatHistory(request.messages));
  const functions = resolved.tools.kind === "auto" ? resolved.tools.functions : undefined;
  const tokens = renderPrompt(engine, resolved.history, functions);
  const bos = beginningToken(engine.model);
  return engine.model.detokenize(bos !== null && tokens[0] === bos ? tokens.slice(1) : tokens, true);
}

export async function prepareChat(engine: Engine, request: ChatCompletionRequest): Promise<ChatJob> {
  const resolved = await resolveTools(engine, request, toChatHistory(request.messages));
  const functions = resolved.tools.kind === "auto" ? resolved.tools.functions : undefined;
  const promptTokens = renderPrompt(engine, resolved.history, functions).length;
  if (promptTokens >= engine.contextSize) throw contextLengthExceeded(promptTokens, engine.contextSize);
  const forced = resolved.tools.kind === "forced" || resolved.tools.kind === "forced-any";
  return {
    history: resolved.history,
    tools: resolved.tools,
    grammar: resolved.grammar,
    // A stop string inside forced JSON arguments would cut them into invalid JSON.
    stop: forced ? [] : stopTriggers(request.stop),
    sampling: samplingFrom(request),
    maxTokens: generationBudget(request.max_completion_tokens ?? request.max_tokens, promptTokens, engine.contextSize),
    promptTokens,
  };
}

function finishReasonOf(stopReason: LlamaChatResponse["metadata"]["stopReason"]): FinishReason {
  if (stopReason === "maxTokens") return "length";
  if (stopReason === "functionCalls") return "tool_calls";
  return "stop";
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

export async function runChat(
  engine: Engine,
  job: ChatJob,
  sequence: LlamaContextSequence,
  events: ChatEvents,
  signal: AbortSignal,
): Promise<ChatResult> {
  const clock = new GenerationClock();
  const meterBefore = sequence.tokenMeter.getState();
  const finish = (content: string, toolCalls: ChatCompletionToolCall[], finishReason: FinishReason): ChatResult => {
    const completionTokens = sequence.tokenMeter.diff(meterBefore).usedOutputTokens;
    return {
      content,
      toolCalls,
      finishReason,
      usage: { prompt_tokens: job.promptTokens, completion_tokens: completionTokens, total_tokens: job.promptTokens + completionTokens },
      timings: clock.finish(job.promptTokens, completionTokens),
    };
  };
  // llama-server answers max_tokens 0 with no tokens rather than with "no limit".
  if (job.maxTokens <= 0) return finish("", [], "length");

  const common = {
    signal,
    stopOnAbortSignal: false,
    maxTokens: job.maxTokens,
    ...job.sampling,
    onToken: clock.tokenArrived,
  };
  const chat = new LlamaChat({ contextSequence: sequence, chatWrapper: engine.chatWrapper });
  try {
    const tools = job.tools;
    if (tools.kind === "auto") {
      // `held` keeps trailing whitespace back: node-llama-cpp's grammar ends parameters with blank lines.
      const streamed = new Map<number, { id: string; args: string; held: string }>();
      const startCall = (index: number, name: string): { id: string; args: string; held: string } => {
        let call = streamed.get(index);
        if (call === undefined) {
          call = { id: newToolCallId(), args: "", held: "" };
          streamed.set(index, call);
          events.toolCallStart(index, call.id, name);
        }
        return call;
      };
      const response = await chat.generateResponse(job.history, {
        ...common,
        customStopTriggers: job.stop,
        functions: tools.functions,
        documentFunctionParams: true,
        ...(tools.maxParallelCalls === undefined ? {} : { maxParallelFunctionCalls: tools.maxParallelCalls }),
        onTextChunk: (text) => {
          if (text.length > 0) events.content(text);
        },
        onFunctionCallParamsChunk: (chunk) => {
          clock.tokenArrived();
          const call = startCall(chunk.callIndex, chunk.functionName);
          const text = call.held + chunk.paramsChunk;
          const body = text.trimEnd();
          call.held = text.slice(body.length);
          if (body.length > 0) {
            call.args += body;
            events.toolCallArguments(chunk.callIndex, body);
          }
        },
      });
      const toolCalls = (response.functionCalls ?? []).map((functionCall, index): ChatCompletionToolCall => {
        const call = startCall(index, functionCall.functionName);
        if (!isJson(call.args)) {
          // Nothing (or nothing usable) was streamed: send the parsed parameters so clients can JSON.parse them.
          const args = JSON.stringify(functionCall.params ?? {});
          if (call.args.length === 0) events.toolCallArguments(index, args);
          call.args = args;
        }
        return { id: call.id, type: "function", function: { name: functionCall.functionName, arguments: call.args } };
      });
      return finish(response.response, toolCalls, toolCalls.length > 0 ? "tool_calls" : finishReasonOf(response.metadata.stopReason));
    }

    if (tools.kind === "forced") {
      const id = newToolCallId();
      let started = false;
      const start = (): void => {
        if (!started) events.toolCallStart(0, id, tools.name);
        started = true;
      };
      const response = await chat.generateResponse(job.history, {
        ...common,
        ...(job.grammar === undefined ? {} : { grammar: job.grammar }),
        onTextChunk: (text) => {
          start();
          if (text.length > 0) events.toolCallArguments(0, text);
        },
      });
      start();
      const args = response.response.trim();
      // The grammar's tail (blank lines that end it) may be cut by max_tokens after the JSON is already whole.
      const reason = isJson(args) ? "tool_calls" : finishReasonOf(response.metadata.stopReason);
      return finish("", [{ id, type: "function", function: { name: tools.name, arguments: args } }], reason);
    }

    if (tools.kind === "forced-any") {
      const response = await chat.generateResponse(job.history, {
        ...common,
        ...(job.grammar === undefined ? {} : { grammar: job.grammar }),
      });
      let call: { name?: unknown; arguments?: unknown } | undefined;
      try {
        call = JSON.parse(response.response) as { name?: unknown; arguments?: unknown };
      } catch {
        call = undefined;
      }
      if (call === undefined || typeof call.name !== "string") {
        // Cut off by max_tokens before the JSON closed: hand back what there is as text.
        events.content(response.response);
        return finish(response.response, [], finishReasonOf(response.metadata.stopReason));
      }
      const id = newToolCallId();
      const args = JSON.stringify(call.arguments ?? {});
      events.toolCallStart(0, id, call.name);
      events.toolCallArguments(0, args);
      return finish("", [{ id, type: "function", function: { name: call.name, arguments: args } }], "tool_calls");
    }

    const response = await chat.generateResponse(job.history, {
      ...common,
      customStopTriggers: job.stop,
      ...(job.grammar === undefined ? {} : { grammar: job.grammar }),
      onTextChunk: (text) => {
        if (text.length > 0) events.content(text);
      },
    });
    return finish(response.response, [], finishReasonOf(response.metadata.stopReason));
  } finally {
    chat.dispose({ disposeSequence: false });
  }
}
