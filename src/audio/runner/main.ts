/**
 * Entry point of a whisper runner: one whisper model, one port. The gateway starts one per loaded
 * whisper model through the lifecycle (like an LLM backend), so inference runs in this process and never
 * on the gateway's event loop; inside it, whisper.node runs the model on a libuv worker thread, so this
 * server keeps answering /health while it works.
 *
 *   node dist/audio/runner/main.js --host H --port P --spec BASE64_JSON   (RunnerSpec)
 *   node dist/audio/runner/main.js --self-check                          (loads the native binding, exits 0/1)
 *
 * One transcription at a time (a whisper context is single-threaded; the lifecycle grants one slot).
 * When the client goes away the job is stopped with whisper.node's stop(). That only takes effect
 * between whisper.cpp stages, so the gateway also recycles this process after an abandoned job.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { parseArgs } from "node:util";
import { watchForOrphaning } from "../../embedded/orphan.js";
import { type RunnerRequest, type RunnerResult, type RunnerSpec, type TimedText, readFrame, TRANSCRIBE_PATH } from "./protocol.js";

type WhisperModule = typeof import("@fugood/whisper.node");
type WhisperContext = Awaited<ReturnType<WhisperModule["initWhisper"]>>;
type TranscribeOptions = Parameters<WhisperContext["transcribeData"]>[1];

const SHUTDOWN_GRACE_MS = 1000;

const log = (line: string) => process.stderr.write(`[whisper-runner] ${line}\n`);

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const payload = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(payload) });
  res.end(payload);
}

const errorBody = (message: string, type = "invalid_request_error", code: string | null = null) => ({ error: { message, type, param: null, code } });

async function selfCheck(): Promise<never> {
  try {
    const whisper = await import("@fugood/whisper.node");
    await whisper.loadWhisperModule();
    process.exit(0);
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

function parseSpec(text: string | undefined): RunnerSpec {
  if (!text) throw new Error("--spec is required");
  return JSON.parse(Buffer.from(text, "base64").toString("utf8")) as RunnerSpec;
}

interface Job {
  stop(): void;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string" }, spec: { type: "string" }, "self-check": { type: "boolean", default: false } },
    strict: true,
  });
  if (values["self-check"]) await selfCheck();
  const spec = parseSpec(values.spec);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port <= 0) throw new Error("--port is required");

  let whisper: WhisperModule | undefined;
  let context: WhisperContext | undefined;
  let job: Job | undefined;
  let stopping = false;

  const transcribe = async (request: RunnerRequest, pcm: ArrayBuffer, aborted: () => boolean): Promise<RunnerResult> => {
    const ctx = context;
    if (!ctx) throw new Error("model not loaded");
    const { defaults } = spec;
    const language = spec.multilingual ? (request.language ?? defaults.language ?? "auto") : "en";
    const options: TranscribeOptions = {
      temperatureInc: defaults.temperatureInc,
      bestOf: defaults.bestOf,
      maxContext: defaults.maxContext,
      wordThold: defaults.wordThold,
      nProcessors: defaults.nProcessors,
      maxThreads: spec.threads,
      language,
      translate: request.task === "translate" && spec.multilingual,
      temperature: request.temperature ?? defaults.temperature,
      prompt: request.prompt ?? defaults.prompt,
    };
    const run = async (extra: TranscribeOptions) => {
      // whisper.node converts the samples to floats on the way in, so both passes can share one buffer.
      const handle = ctx.transcribeData(pcm, { ...options, ...extra });
      job = { stop: () => void handle.stop().catch(() => {}) };
      if (aborted()) job.stop();
      try {
        const result = await handle.promise;
        if (result.isAborted) throw new Error("transcription stopped");
        return result;
      } finally {
        job = undefined;
      }
    };
    const began = performance.now();
    let detected = language;
    let segments: TimedText[] = [];
    let pieces: TimedText[] = [];
    if (request.segments) {
      const result = await run({});
      detected = result.language || detected;
      segments = result.segments;
    }
    if (request.pieces && !aborted()) {
      // max_len 1 with token timestamps splits every segment into its tokens, each with its own times.
      const result = await run({ tokenTimestamps: true, maxLen: 1, ...(request.segments ? { language: detected } : {}) });
      detected = result.language || detected;
      pieces = result.segments;
    }
    return { language: detected, segments, pieces, inference_ms: Math.round(performance.now() - began) };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/health") {
      if (context) sendJson(res, 200, { status: "ok" });
      else sendJson(res, 503, errorBody("Loading model", "unavailable_error"));
      return;
    }
    if (req.method !== "POST" || path !== TRANSCRIBE_PATH) {
      req.resume();
      sendJson(res, 404, errorBody(`This model serves speech to text only (POST /v1/audio/transcriptions or /v1/audio/translations), not ${req.method} ${path}.`));
      return;
    }
    if (!context) return sendJson(res, 503, errorBody("Loading model", "unavailable_error"));
    if (job || stopping) return sendJson(res, 503, errorBody("The runner is busy with another transcription.", "unavailable_error"));
    const length = Number(req.headers["content-length"]);
    if (!Number.isInteger(length) || length < 4) return sendJson(res, 400, errorBody("Content-Length is required"));
    let gone = false;
    res.on("close", () => {
      if (res.writableFinished) return;
      gone = true;
      job?.stop();
    });
    // Taken at once, so a second request cannot slip in while this one's body is still arriving.
    job = { stop: () => {} };
    let frame;
    try {
      frame = await readFrame(req, length);
    } catch (error) {
      job = undefined;
      return sendJson(res, 400, errorBody(`Bad frame: ${(error as Error).message}`));
    }
    job = undefined;
    try {
      const result = await transcribe(frame.request, frame.pcm, () => gone);
      sendJson(res, 200, result);
    } catch (error) {
      log(`transcription failed: ${(error as Error).message}`);
      sendJson(res, 500, errorBody(`Transcription failed: ${(error as Error).message}`, "server_error"));
    }
  };

  const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    handle(req, res).catch((error: unknown) => {
      log(`request failed: ${(error as Error).message}`);
      sendJson(res, 500, errorBody("internal error", "server_error"));
    });
  });
  // Uploads of long recordings take a while on a busy machine; only the headers must come promptly.
  server.requestTimeout = 0;

  let stopWatching = (): void => {};
  const shutdown = (reason: string) => {
    if (stopping) return;
    stopping = true;
    log(`shutting down: ${reason}`);
    setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref();
    stopWatching();
    job?.stop();
    // Native logging with a callback keeps the process alive (FIXTURES pitfall 4): off before exit.
    void whisper?.toggleNativeLog(false);
    server.close();
    server.closeAllConnections();
    // A job still inside whisper.cpp cannot be interrupted; releasing the context under it is unsafe.
    if (context && !job) void context.release().finally(() => process.exit(0));
    else process.exit(0);
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  stopWatching = watchForOrphaning(shutdown);

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, values.host, () => resolve());
  });
  log(`listening on http://${values.host}:${port}, loading ${spec.multilingual ? "multilingual" : "English-only"} model`);

  const began = performance.now();
  whisper = await import("@fugood/whisper.node");
  context = await whisper.initWhisper({ filePath: spec.modelPath, useGpu: false, useFlashAttn: spec.flashAttn });
  if (stopping) return;
  log(`model loaded in ${Math.round(performance.now() - began)} ms, ready`);
}

main().catch((error: unknown) => {
  log(`fatal: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
