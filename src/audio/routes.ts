/**
 * `POST /v1/audio/transcriptions` and `POST /v1/audio/translations` (to English), on both listeners:
 * multipart/form-data or JSON with a base64 `file`, every OpenAI response format. Errors are thrown as
 * GatewayErrors and rendered by the listener's error handler in OpenAI's envelope.
 */
import multipart from "@fastify/multipart";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { invalidRequest } from "../errors/index.js";
import { abortOnClientClose } from "../gateway/client-abort.js";
import { render, type Task } from "./formats.js";
import { checkDeclaredLength, jsonBodyLimit, receiveUpload } from "./intake.js";
import { parseAudioRequest } from "./request.js";
import { type AudioService, TranscriptionTimeout } from "./service.js";

export interface AudioRoutesOptions {
  audio: AudioService;
  /** The listener's `rate_limits.file_upload_size_mb`, in bytes. */
  uploadLimitBytes: number;
}

export async function audioRoutes(app: FastifyInstance, { audio, uploadLimitBytes: limitBytes }: AudioRoutesOptions): Promise<void> {
  await app.register(multipart, {
    // Our own byte count enforces the file limit as the upload streams (intake.ts); these bound the rest of the form.
    limits: { fileSize: limitBytes + 1, fields: 64, fieldSize: 1024 * 1024, parts: 128, headerPairs: 64 },
  });

  // Before the body parsers run: a declared length over the limit is answered at once, nothing read.
  app.addHook("onRequest", async (request, reply) => checkDeclaredLength(request, reply, limitBytes));

  const handler = (task: Task) => async (request: FastifyRequest, reply: FastifyReply) => {
    const { signal } = abortOnClientClose(reply.raw);
    let file: string | undefined;
    try {
      const upload = await receiveUpload(request, reply, { limitBytes, temp: audio.temp }, (path) => (file = path));
      const fields = parseAudioRequest(upload.fields, task);
      const target = audio.resolve(fields.model);
      audio.check(target, fields);
      if (upload.file === undefined) throw invalidRequest("'file' is required: the audio to transcribe.", "file");
      const done = audio.admit(target);
      try {
        const decoded = await audio.decode(upload.file, signal);
        // Decoded samples are all we need from here on; the upload goes now, not after the inference.
        await audio.temp.remove(upload.file);
        file = undefined;
        const transcript = await audio.transcribe(target, fields, decoded, signal);
        const { contentType, body } = render(transcript, fields.responseFormat);
        return reply.type(contentType).send(body);
      } finally {
        done();
      }
    } catch (error) {
      if (error instanceof TranscriptionTimeout) void reply.header("x-should-retry", "false");
      throw error;
    } finally {
      if (file !== undefined) await audio.temp.remove(file);
    }
  };

  const options = { bodyLimit: jsonBodyLimit(limitBytes) };
  app.post("/v1/audio/transcriptions", options, handler("transcribe"));
  app.post("/v1/audio/translations", options, handler("translate"));
}
