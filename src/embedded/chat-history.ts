/**
 * Turns an OpenAI `messages` array into node-llama-cpp's chat history. node-llama-cpp keeps a tool call and
 * its result together inside the model's turn, while OpenAI sends the call (assistant `tool_calls`) and the
 * result (`tool` message) separately, linked by id; this module pairs them up.
 */
import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelResponse } from "node-llama-cpp";
import type { ChatMessage } from "../protocol/openai.js";
import { badRequest } from "./errors.js";

/** Text of a message: a string, or its text parts joined by newlines as llama-server does. */
export function messageText(content: ChatMessage["content"], at: string): string {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  const texts: string[] = [];
  for (const part of content) {
    if (part.type === "text" && typeof part.text === "string") texts.push(part.text);
    else if (part.type === "image_url" || part.type === "input_audio") {
      throw badRequest(`${part.type} content is not supported by this model`, at);
    }
  }
  return texts.join("\n");
}

function parseArguments(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** Tool output goes into the prompt as JSON when it is JSON, otherwise as the plain string. */
function parseResult(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) return parseArguments(trimmed);
  return text;
}

export function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  const callsById = new Map<string, ChatModelFunctionCall>();
  /** Calls still waiting for a result, in order: tool messages without a known id take the oldest. */
  const unanswered: ChatModelFunctionCall[] = [];
  const lastModelTurn = (): ChatModelResponse | undefined => {
    const last = history.at(-1);
    return last?.type === "model" ? last : undefined;
  };

  messages.forEach((message, i) => {
    const at = `messages.${i}.content`;
    switch (message.role) {
      case "system":
      case "developer":
        history.push({ type: "system", text: messageText(message.content, at) });
        return;
      case "user":
        history.push({ type: "user", text: messageText(message.content, at) });
        return;
      case "assistant": {
        const text = messageText(message.content, at);
        // An assistant message right after tool results continues the same model turn, as node-llama-cpp models it.
        const previous = lastModelTurn();
        const lastItem = previous?.response.at(-1);
        const continuesTurn = typeof lastItem === "object" && lastItem.type === "functionCall";
        const turn: ChatModelResponse = continuesTurn && previous !== undefined ? previous : { type: "model", response: [] };
        if (!continuesTurn) history.push(turn);
        if (text.length > 0) turn.response.push(text);
        for (const call of message.tool_calls ?? []) {
          const item: ChatModelFunctionCall = {
            type: "functionCall",
            name: call.function.name,
            params: parseArguments(call.function.arguments),
            result: undefined,
          };
          turn.response.push(item);
          unanswered.push(item);
          if (call.id !== undefined) callsById.set(call.id, item);
        }
        return;
      }
      case "tool":
      case "function": {
        const text = messageText(message.content, at);
        const byId = message.tool_call_id === undefined ? undefined : callsById.get(message.tool_call_id);
        const byName = message.name === undefined ? undefined : unanswered.find((call) => call.name === message.name);
        const call = byId ?? byName ?? unanswered[0];
        if (call === undefined) {
          // A result for a call the history does not show; keep the information rather than drop it.
          history.push({ type: "user", text: `Tool result${message.name ? ` (${message.name})` : ""}: ${text}` });
          return;
        }
        call.result = parseResult(text);
        unanswered.splice(unanswered.indexOf(call), 1);
        return;
      }
    }
  });
  return history;
}
