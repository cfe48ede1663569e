/** `POST /v1/chat/completions`: OpenAI's chat.completion and its SSE stream, plus llama-server's `timings`; and `POST /apply-template`. */
import { randomBytes } from "node:crypto";
import {
  chatCompletionRequestSchema,
  describeIssues,
  type ChatCompletionChunk,
  type ChatCompletionResponse,
} from "../../protocol/openai.js";
import { prepareChat, runChat, templatePrompt, type ChatEvents, type ChatResult } from "../chat.js";
import { badRequest } from "../errors.js";
import { sendJson, type RouteHandler, type Routes } from "../http-server.js";
import type { RunnerState } from "../runner-state.js";
import { SseStream } from "../sse.js";

export function describeSpeed(result: Pick<ChatResult, "usage" | "timings">): string {
  return `prompt=${result.usage.prompt_tokens} predicted=${result.usage.completion_tokens} ${result.timings.predicted_per_second.toFixed(1)} tok/s`;
}

export function chatRoutes(state: RunnerState): Routes {
  const handler: RouteHandler = async ({ body, res, signal, note }) => {
    const engine = state.ready();
    const parsed = chatCompletionRequestSchema.safeParse(body);
    if (!parsed.success) throw badRequest(describeIssues(parsed.error));
    const request = parsed.data;
    // Every client error is found here, before a sequence is taken or a byte of a stream is sent.
    const job = await prepareChat(engine, request);
    const lease = await engine.pool.acquire(signal);
    try {
      const id = `chatcmpl-${randomBytes(16).toString("hex")}`;
      const created = Math.floor(Date.now() / 1000);
      // Same id and created in every event of a stream, as clients expect.
      const head = <O extends string>(object: O) => ({ id, object, created, model: request.model, system_fingerprint: engine.fingerprint });

      if (request.stream !== true) {
        const result = await runChat(engine, job, lease.sequence, { content() {}, toolCallStart() {}, toolCallArguments() {} }, signal);
        const hasTools = result.toolCalls.length > 0;
        const response: ChatCompletionResponse = {
          ...head("chat.completion"),
          choices: [
            {
              index: 0,
              message: {
                role: "assistant",
                content: hasTools && result.content.length === 0 ? null : result.content,
                refusal: null,
                ...(hasTools ? { tool_calls: result.toolCalls } : {}),
              },
              logprobs: null,
              finish_reason: result.finishReason,
            },
          ],
          usage: result.usage,
          timings: result.timings,
        };
        note(describeSpeed(result));
        sendJson(res, 200, response);
        return;
      }

      const stream = new SseStream(res);
      type Choice = ChatCompletionChunk["choices"][number];
      const chunk = (delta: Choice["delta"], finishReason: Choice["finish_reason"] = null): ChatCompletionChunk => ({
        ...head("chat.completion.chunk"),
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      });
      stream.send(chunk({ role: "assistant", content: "" }));
      const events: ChatEvents = {
        content: (text) => stream.send(chunk({ content: text })),
        toolCallStart: (index, callId, name) =>
          stream.send(chunk({ tool_calls: [{ index, id: callId, type: "function", function: { name, arguments: "" } }] })),
        toolCallArguments: (index, fragment) => stream.send(chunk({ tool_calls: [{ index, function: { arguments: fragment } }] })),
      };
      const result = await runChat(engine, job, lease.sequence, events, signal);
      const withUsage = request.stream_options?.include_usage === true;
      // llama-server puts `timings` on the last JSON event of the stream.
      stream.send({ ...chunk({}, result.finishReason), ...(withUsage ? {} : { timings: result.timings }) });
      if (withUsage) {
        const usageChunk: ChatCompletionChunk = { ...head("chat.completion.chunk"), choices: [], usage: result.usage, timings: result.timings };
        stream.send(usageChunk);
      }
      stream.done();
      note(describeSpeed(result));
    } finally {
      lease.release();
    }
  };
  // The chat request's prompt as text, without generating: what llama-server's endpoint of that name answers.
  const applyTemplate: RouteHandler = async ({ body, res }) => {
    const engine = state.ready();
    const parsed = chatCompletionRequestSchema.safeParse(body);
    if (!parsed.success) throw badRequest(describeIssues(parsed.error));
    sendJson(res, 200, { prompt: await templatePrompt(engine, parsed.data) });
  };
  return { "POST /v1/chat/completions": handler, "POST /chat/completions": handler, "POST /apply-template": applyTemplate };
}
