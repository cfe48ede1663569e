/**
 * Takes an upload off the wire into one temp file of its own: multipart/form-data (what the OpenAI
 * SDKs and curl -F send) streamed to disk with the size limit counted as bytes arrive, or a JSON body
 * with a base64 `file` (what llama-server also accepts). A body over the limit is answered 413 as soon
 * as the limit is crossed, with `Connection: close`, so the rest of it is never read.
 */
import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
// The multipart plugin (registered by routes.ts) adds request.isMultipart() and request.parts().
import type {} from "@fastify/multipart";
import type { FastifyReply, FastifyRequest } from "fastify";
import { GatewayError, invalidRequest } from "../errors/index.js";

/** The upload folder of one gateway: one file per request, each removed when its request ends, the folder at shutdown. */
export class TempFiles {
  private constructor(readonly dir: string) {}

  static async create(parent = tmpdir()): Promise<TempFiles> {
    return new TempFiles(await mkdtemp(join(parent, "llama-runner-audio-")));
  }

  /** A fresh path (nothing is created yet); `remove` it when done, whatever happened. */
  reserve(): string {
    return join(this.dir, randomUUID());
  }

  remove(path: string): Promise<void> {
    return rm(path, { force: true });
  }

  close(): Promise<void> {
    return rm(this.dir, { recursive: true, force: true });
  }
}

export interface Upload {
  /** Form fields (repeated keys become arrays) or the JSON body without `file`. */
  fields: Record<string, unknown>;
  /** The temp file holding the audio, when the request carried one. */
  file: string | undefined;
  bytes: number;
}

export interface IntakeOptions {
  limitBytes: number;
  temp: TempFiles;
}

const MB = 1_000_000;
/** Room for the form fields around the file in a multipart body. */
const FORM_OVERHEAD_BYTES = 1024 * 1024;

export function tooLarge(limitBytes: number, reply: FastifyReply): GatewayError {
  // Close the connection after the answer: reading the rest of a huge upload only to discard it is the cost we refuse.
  void reply.header("connection", "close");
  return new GatewayError("payload_too_large", `The file is larger than the ${limitBytes / MB} MB this server accepts (rate_limits.file_upload_size_mb).`, { param: "file" });
}

/** Reads the request into a temp file; the caller removes `upload.file` in a finally, also when this throws. */
export async function receiveUpload(request: FastifyRequest, reply: FastifyReply, options: IntakeOptions, onFile: (path: string) => void): Promise<Upload> {
  if (!request.isMultipart()) return receiveJson(request.body, options.limitBytes, options.temp, onFile);
  try {
    return await receiveMultipart(request, reply, options, onFile);
  } catch (error) {
    // busboy's parse errors ("Boundary not found", "Unexpected end of multipart data") carry no status:
    // they are the client's malformed body, not our failure. Errors of our own disk keep their 500.
    const known = error instanceof GatewayError || (error as { statusCode?: number }).statusCode !== undefined || (error as NodeJS.ErrnoException).syscall !== undefined;
    if (known) throw error;
    throw invalidRequest(`Malformed multipart/form-data body: ${(error as Error).message}`);
  }
}

async function receiveMultipart(request: FastifyRequest, reply: FastifyReply, { limitBytes, temp }: IntakeOptions, onFile: (path: string) => void): Promise<Upload> {
  const fields: Record<string, unknown> = {};
  let file: string | undefined;
  let bytes = 0;
  for await (const part of request.parts()) {
    if (part.type === "field") {
      const value = String(part.value);
      const existing = fields[part.fieldname];
      fields[part.fieldname] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
      continue;
    }
    if (part.fieldname !== "file") {
      part.file.resume();
      throw invalidRequest(`Unexpected file field '${part.fieldname}'; send the audio as 'file'.`, part.fieldname);
    }
    if (file !== undefined) {
      part.file.resume();
      throw invalidRequest("Send one audio file per request.", "file");
    }
    file = temp.reserve();
    onFile(file);
    const counted = async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        bytes += chunk.length;
        if (bytes > limitBytes) throw tooLarge(limitBytes, reply);
        yield chunk;
      }
    };
    await pipeline(part.file, counted, createWriteStream(file, { flags: "wx", mode: 0o600 }));
    if (part.file.truncated) throw tooLarge(limitBytes, reply);
  }
  return { fields, file, bytes };
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

async function receiveJson(body: unknown, limitBytes: number, temp: TempFiles, onFile: (path: string) => void): Promise<Upload> {
  if (body === undefined || body === null || typeof body !== "object" || Array.isArray(body)) {
    throw invalidRequest("Send multipart/form-data with a 'file', or a JSON object with the audio base64-encoded in 'file'.");
  }
  const { file: encoded, ...fields } = body as Record<string, unknown>;
  if (encoded === undefined || encoded === null) return { fields, file: undefined, bytes: 0 };
  if (typeof encoded !== "string") throw invalidRequest("'file' must be the audio, base64-encoded.", "file");
  // A data: URL is fine; anything else that is not base64 (a path, a URL) is refused, never opened.
  const base64 = encoded.replace(/^data:[^,]*;base64,/, "").replace(/\s+/g, "");
  if (!BASE64.test(base64)) throw invalidRequest("'file' must be the audio, base64-encoded (a path or URL is not accepted).", "file");
  const audio = Buffer.from(base64, "base64");
  if (audio.length > limitBytes) throw new GatewayError("payload_too_large", `The file is larger than the ${limitBytes / MB} MB this server accepts (rate_limits.file_upload_size_mb).`, { param: "file" });
  const path = temp.reserve();
  onFile(path);
  await writeFile(path, audio, { flag: "wx", mode: 0o600 });
  return { fields, file: path, bytes: audio.length };
}

/** Bytes a JSON body may have: the base64 of the largest file plus room for the other fields. */
export const jsonBodyLimit = (limitBytes: number): number => Math.ceil(limitBytes / 3) * 4 + FORM_OVERHEAD_BYTES;

/** Refuses a body whose declared length is already over the limit, before a byte of it is read. */
export function checkDeclaredLength(request: FastifyRequest, reply: FastifyReply, limitBytes: number): void {
  const declared = Number(request.headers["content-length"]);
  if (!Number.isFinite(declared)) return;
  const allowed = request.isMultipart() ? limitBytes + FORM_OVERHEAD_BYTES : jsonBodyLimit(limitBytes);
  if (declared > allowed) throw tooLarge(limitBytes, reply);
}
