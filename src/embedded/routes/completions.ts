/** `POST /v1/completions`: legacy text completion, one choice per prompt, streamed or not. */
import { randomBytes } from "node:crypto";
import { completionRequestSchema, describeIssues, type CompletionResponse, type Usage } from "../../protocol/openai.js";
import { prepareCompletion, runCompletion, sumTimings, type CompletionResult } from "../completion.js";
import { badRequest } from "../errors.js";
import { sendJson, type RouteHandler, type Routes } from "../http-server.js";
import type { RunnerState } from "../runner-state.js";
import { SseStream } from "../sse.js";
import { describeSpeed } from "./chat.js";

function totalUsage(results: readonly CompletionResult[]): Usage {
  const prompt = results.reduce((n, r) => n + r.usage.prompt_tokens, 0);
  const completion = results.reduce((n, r) => n + r.usage.completion_tokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export function completionRoutes(state: RunnerState): Routes {
  const handler: RouteHandler = async ({ body, res, signal, note }) => {
    const engine = state.ready();
    const parsed = completionRequestSchema.safeParse(body);
    if (!parsed.success) throw badRequest(describeIssues(parsed.error));
    const request = parsed.data;
    const job = prepareCompletion(engine, request);
    const lease = await engine.pool.acquire(signal);
    try {
      const base = {
        id: `cmpl-${randomBytes(16).toString("hex")}`,
        object: "text_completion" as const,
        created: Math.floor(Date.now() / 1000),
        model: request.model,
        system_fingerprint: engine.fingerprint,
      };
      const results: CompletionResult[] = [];

      if (request.stream !== true) {
        // One sequence serves the prompts in turn: a multi-prompt request must not starve the other clients' sequences.
        for (const prompt of job.prompts) results.push(await runCompletion(prompt, job, lease.sequence, () => {}, signal));
        const usage = totalUsage(results);
        const response: CompletionResponse = {
          ...base,
          choices: results.map((result, index) => ({
            text: job.echo ? `${job.prompts[index]?.text ?? ""}${result.text}` : result.text,
            index,
            logprobs: null,
            finish_reason: result.finishReason,
          })),
          usage,
          timings: sumTimings(results.map((r) => r.timings)),
        };
        note(describeSpeed({ usage, timings: response.timings ?? sumTimings([]) }));
        sendJson(res, 200, response);
        return;
      }

      const stream = new SseStream(res);
      const chunk = (index: number, text: string, finishReason: CompletionResult["finishReason"] | null = null): CompletionResponse => ({
        ...base,
        choices: [{ text, index, logprobs: null, finish_reason: finishReason }],
      });
      const withUsage = request.stream_options?.include_usage === true;
      for (const [index, prompt] of job.prompts.entries()) {
        if (job.echo) stream.send(chunk(index, prompt.text));
        const result = await runCompletion(prompt, job, lease.sequence, (text) => stream.send(chunk(index, text)), signal);
        results.push(result);
        const last = index === job.prompts.length - 1 && !withUsage;
        stream.send({ ...chunk(index, "", result.finishReason), ...(last ? { timings: sumTimings(results.map((r) => r.timings)) } : {}) });
      }
      const usage = totalUsage(results);
      const timings = sumTimings(results.map((r) => r.timings));
      if (withUsage) stream.send({ ...base, choices: [], usage, timings } satisfies CompletionResponse);
      stream.done();
      note(describeSpeed({ usage, timings }));
    } finally {
      lease.release();
    }
  };
  return { "POST /v1/completions": handler, "POST /completions": handler };
}
